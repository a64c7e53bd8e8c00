"""gpu-slot.py: one GPU per worker replica under `docker compose ... --scale worker=N`.

    python gpu-slot.py python train.py [OPTIONS] [OVERRIDES...]
      -> CUDA_VISIBLE_DEVICES=<this replica's GPU> python train.py ... <what the replica is>

docker/worker-entrypoint.sh runs the worker through this when GPU_SLOTS_DIR or GPU_SLOT is set
(docker/compose.gpu.yaml sets GPU_SLOTS_DIR).

Why here and not in compose: compose gives no replica a GPU of its own. A reservation of
`count: 1` is the same first GPU in every replica of a scaled service (docker/compose#11863,
NVIDIA/nvidia-container-toolkit#521: "all replicas use the same GPU"); `device_ids` pins one
service to fixed GPUs, so one GPU each means one service per GPU, written out per host; and a
replica cannot learn its index without the Docker socket (docker/compose#9153; compose's
container numbers also leave gaps after a scale-down). So every replica reserves all the GPUs
(`count: all`) and takes one here:

- The slots are the local workers sweep/search/workers.py `place` would start on this host,
  from the sweep's own options on the command line (the command or SWEEP_ARGS, Hydra's grammar,
  the last one wins): `hydra.sweeper.gpus` (auto = every GPU the container sees, or a list of
  ids) times `hydra.sweeper.trials_per_gpu` (default 1), the GPUs dealt round-robin, so that
  fewer replicas than slots still spread over the GPUs.
- A replica claims the lowest free slot with an exclusive `flock` on
  `$GPU_SLOTS_DIR/slot-<i>.lock` (a volume every replica mounts) and keeps the lock open through
  the `exec` into train.py. The kernel drops it when the worker ends however it ends, so a
  restarted replica finds a free slot again, and two replicas that start together never share
  one. `GPU_SLOT=<i>` names the slot instead (a service per GPU, `docker run`); it takes no lock.
- The worker is then told what it is: its one GPU (`hydra.sweeper.gpus=auto` over the GPU it
  sees, since host ids mean nothing after the pinning), one worker process
  (`hydra.sweeper.n_workers=1`) and, unless `trainer.threads` is given, its share of the cores:
  every replica sees all the host's, and a torch thread per core in each oversubscribes them as
  local workers would (sweep/search/sweeper.py divides them the same way).

Errors (no GPU in the container, a bad option, every slot taken): one line, exit 2.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from sweep.core.config import ConfigError
from sweep.core.devices import GPU_ENV, visible_gpus
from sweep.search import workers

WHO = "sweep-worker"
GPUS, PER_GPU, N_WORKERS, THREADS = (
    "hydra.sweeper.gpus",
    "hydra.sweeper.trials_per_gpu",
    "hydra.sweeper.n_workers",
    "trainer.threads",
)


def fail(message: str) -> NoReturn:
    print(f"{WHO}: {message}", file=sys.stderr)
    sys.exit(2)


def overrides_of(args: list[str], key: str) -> list[str]:
    """The arguments that override `key` (`key=...`, `+key=...`, `++key=...`, `~key`)."""
    return [a for a in args if a.lstrip("+~").split("=", 1)[0] == key]


def setting(args: list[str], key: str, default: Any) -> Any:
    """`key`'s value on the command line as Hydra reads it (the last override wins)."""
    given = overrides_of(args, key)
    if not given:
        return default
    try:
        value = OverridesParser.create().parse_override(given[-1]).value()
    except HydraException as e:
        fail(f"cannot read {given[-1]!r}: {str(e).splitlines()[0]}")
    return default if value is None else value  # `~key`: back to the default


def slots(args: list[str], visible: list[str]) -> list[str]:
    """Slot i's CUDA_VISIBLE_DEVICES, for every slot of this host (workers.place's rule)."""
    per_gpu = setting(args, PER_GPU, 1)
    if not isinstance(per_gpu, int) or isinstance(per_gpu, bool):
        fail(f"{PER_GPU} must be an integer >= 1, got {per_gpu!r}")
    device = str(setting(args, "trainer.device", "auto"))
    try:
        placement = workers.place(
            setting(args, GPUS, "auto"),
            per_gpu,
            "auto",
            visible=visible,
            device=device,
            in_process=True,
            cores_here=1,
        )
    except ConfigError as e:
        fail(str(e))
    if not placement.gpus:
        fail(
            f"no GPU for this worker ({GPUS}={setting(args, GPUS, 'auto')}, trainer.device="
            f"{device}, GPUs in this container: {len(visible)}); GPU workers need the NVIDIA "
            "Container Toolkit on the host, or leave docker/compose.gpu.yaml out for CPU workers"
        )
    return [str(d) for d in placement.devices]  # with GPUs in use, every worker has one


def claim(folder: Path, n: int) -> tuple[int, int] | None:
    """The lowest free slot in `folder` and the open, locked file that holds it (None: all
    taken). The descriptor is inheritable: the lock lives as long as the exec'd worker."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        fd = os.open(folder / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)
        return i, fd
    return None


def slot_of(args: list[str], n: int) -> int:
    """This replica's slot: GPU_SLOT, else the lowest one free in GPU_SLOTS_DIR."""
    plan = f"{n} slot(s): the GPUs x {PER_GPU}={setting(args, PER_GPU, 1)}"
    given = os.environ.get("GPU_SLOT", "").strip()
    if given:
        if not given.isdigit() or int(given) >= n:
            fail(f"GPU_SLOT={given} but this host has {plan} (GPU_SLOT 0-{n - 1})")
        return int(given)
    if not os.environ.get("GPU_SLOTS_DIR"):
        fail("set GPU_SLOTS_DIR (a folder every replica shares) or GPU_SLOT")
    folder = Path(os.environ["GPU_SLOTS_DIR"])
    try:
        got = claim(folder, n)
    except OSError as e:
        fail(f"cannot take a GPU slot in {folder}: {e.strerror}")
    if got is None:
        fail(
            f"every GPU slot is taken ({plan}): run at most {n} worker replicas "
            f"(--scale worker={n}), or raise {PER_GPU} to pack more trials on each GPU"
        )
    return got[0]


def pinned(args: list[str], n_slots: int) -> list[str]:
    """The worker's command: one GPU (the one it sees), one process, its share of the cores."""
    own = set(overrides_of(args, GPUS) + overrides_of(args, N_WORKERS))
    out = [a for a in args if a not in own] + [f"{GPUS}=auto", f"{N_WORKERS}=1"]
    if not overrides_of(args, THREADS):
        out.append(f"{THREADS}={workers.threads_each(n_slots)}")
    return out


def main(command: list[str]) -> NoReturn:
    if not command:
        fail("usage: gpu-slot.py COMMAND [ARGS...]")
    devices = slots(command, visible_gpus())
    slot = slot_of(command, len(devices))
    os.environ[GPU_ENV] = devices[slot]
    print(
        f"{WHO}: GPU slot {slot} of {len(devices)}: {GPU_ENV}={devices[slot]}",
        file=sys.stderr,
        flush=True,
    )
    args = pinned(command, len(devices))
    os.execvp(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
