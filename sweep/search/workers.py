"""Local worker processes: `hydra.sweeper.n_workers` parallel trials on one machine.

The process the user started (the main worker) creates the Optuna study, the MLflow store and the
parent run, then starts `n_workers - 1` helpers: the same `python train.py -m ...` command with
`hydra.sweeper.n_workers=1`, the same sweep directory and, unless the user chose
`trainer.threads`, an equal share of the CPU cores each. Every worker is an ordinary cooperating
worker of the study (see sweep/search/sweeper.py): it asks for a trial under the study lock
whenever it is free, so a pruned trial frees its core at once, with no batch to wait for. Helpers
write their output to `<sweep dir>/worker-<i>.log` and leave the sweep's summary to the main
worker, which finishes last.

Why processes and not Hydra's joblib launcher: a launcher runs a batch of trials and returns when
the slowest of them is done, so with pruning most of a batch's cores wait; and why not threads:
one torch thread pool per process, and the GIL.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.core import trial_env
from sweep.core.config import ConfigError, parse_gpus, parse_n_workers
from sweep.core.devices import GPU_ENV, cuda_started
from sweep.core.overrides import to_override

log = logging.getLogger(__name__)

HELPER_ENV = trial_env.HELPER_OF
READY_ENV = trial_env.HELPER_READY
KEY_ENV = trial_env.HELPER_KEY
MAX_AUTO = 4
READY_TIMEOUT = 600.0


def is_helper() -> bool:
    return bool(os.environ.get(HELPER_ENV))


_KEY = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def main_key() -> str:
    """The key of this process's main worker: the same in the main worker and its helpers, and
    unique among every worker of every run on a study (host, pid and a random part, so a pid
    reused by a later run is another key). What a main worker writes for its own helpers into a
    shared study is kept under it, where no other worker writes."""
    return os.environ.get(KEY_ENV) or _KEY


def main_pid() -> int:
    """The pid of this process's main worker (itself, unless it is a helper)."""
    return int(os.environ.get(HELPER_ENV) or os.getpid())


def main_alive() -> bool:
    """Whether this process's main worker is still running (a helper's main is on this host)."""
    try:
        os.kill(main_pid(), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse(setting: Any) -> int | None:
    """`n_workers` as given: None for "auto", else a positive int (ConfigError otherwise)."""
    return parse_n_workers(setting)


# ----------------------------------------------------------------------------- GPU placement


@dataclass
class Placement:
    """Where each local worker runs: `devices[i]` is worker i's `CUDA_VISIBLE_DEVICES` (worker 0
    is this process), "" to hide every GPU, None to leave the environment as it is."""

    devices: list[str | None]
    gpus: list[str]  # the GPUs the sweep uses (empty: none)

    def trimmed(self, remaining: int) -> Placement:
        """No more workers than trials left (at least one)."""
        return Placement(self.devices[: max(1, min(len(self.devices), remaining))], self.gpus)


def place(
    gpus: Any,
    trials_per_gpu: int,
    n_workers: Any,
    *,
    visible: list[str],
    device: str,
    in_process: bool,
    cores_here: int,
) -> Placement:
    """The local workers of a sweep and the GPU each one sees (ConfigError on a bad setting).

    - GPUs in use (`gpus=auto` and some visible, or a list of ids; `trainer.device` not cpu):
      `trials_per_gpu` workers per GPU, each pinned to one GPU; the GPUs are dealt round-robin,
      so fewer workers (n_workers=N, or few trials left) still spread over the GPUs.
    - Otherwise the CPU rule: "auto" is one worker per core, at most MAX_AUTO; `gpus=none`
      hides the GPUs from every worker.
    - A parallel launcher (n_jobs) runs trials side by side already: one worker, unpinned."""
    if int(trials_per_gpu) < 1:
        raise ConfigError(f"hydra.sweeper.trials_per_gpu must be >= 1, got {trials_per_gpu}")
    chosen = choose_gpus(gpus, visible, device)
    n = parse(n_workers)
    if not in_process:
        return Placement([None], chosen)
    if not chosen:
        hide = "" if visible else None  # GPUs present but not for this sweep: hidden
        count = n if n is not None else min(MAX_AUTO, cores_here)
        return Placement([hide] * count, [])
    slots = [g for _ in range(int(trials_per_gpu)) for g in chosen]
    count = n if n is not None else len(slots)
    return Placement([slots[i % len(slots)] for i in range(count)], chosen)


def choose_gpus(gpus: Any, visible: list[str], device: str) -> list[str]:
    """The GPUs a sweep's local workers use, as `CUDA_VISIBLE_DEVICES` entries."""
    setting = parse_gpus(gpus)
    if setting == "none" or device == "cpu":
        if device == "cuda":
            raise ConfigError("trainer.device=cuda contradicts hydra.sweeper.gpus=none")
        return []
    if setting == "auto":
        return list(visible)
    if not visible:
        raise ConfigError(
            f"hydra.sweeper.gpus={setting} but torch sees no CUDA GPU on this machine"
        )
    missing = [i for i in setting if i >= len(visible)]
    if missing:
        raise ConfigError(
            f"hydra.sweeper.gpus names GPU {missing[0]}, but this machine shows {len(visible)} "
            f"(ids 0-{len(visible) - 1})"
        )
    return [visible[i] for i in setting]


def pin_self(device: str | None) -> None:
    """Worker 0 is this process: it sees only its own GPU. Set before CUDA starts here (CUDA
    reads the variable once); if CUDA has started already, each job keeps to one GPU on its own
    (sweep/train/gpu.py) and this says why."""
    if device is None:
        return
    if cuda_started():
        log.warning("CUDA started before the sweep could pin this worker to GPU %s", device)
        return
    os.environ[GPU_ENV] = device


def threads_each(n_workers: int) -> int:
    return max(1, cores() // n_workers)


def helper_command(sweep_dir: Path, threads: int | None) -> list[str] | None:
    """The command line of a helper: this process's own, with one worker and the same sweep dir."""

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or not script.is_file():
        return None
    own = ("hydra.sweeper.n_workers=", "hydra.sweep.dir=")
    args = [a for a in sys.argv[1:] if not a.startswith(own)]
    args += ["hydra.sweeper.n_workers=1", to_override("hydra.sweep.dir", str(sweep_dir.resolve()))]
    if threads:
        args.append(f"trainer.threads={threads}")
    return [sys.executable, str(script.resolve()), *args]


class Helpers:
    """The helper processes of one sweep."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.ready_file: Path | None = None

    def start(
        self,
        devices: list[str | None],
        sweep_dir: Path,
        threads: int | None,
        cmd: list[str] | None = None,
    ) -> None:
        """Start a helper for each of `devices[1:]` (worker 0 is this process; see Placement),
        with that value as its own `CUDA_VISIBLE_DEVICES` (None: this process's environment as
        it is). `cmd`: the helpers' command line (default: this sweep's, see helper_command).
        They import torch and transformers meanwhile and wait for ready() before they touch a
        store (a fresh MLflow SQLite store must be created by one process)."""
        n = len(devices) - 1
        cmd = cmd or helper_command(sweep_dir, threads)
        if cmd is None:
            log.warning("cannot tell how this sweep was started: running 1 worker, not %d", n + 1)
            return
        self.ready_file = sweep_dir / f".workers-ready-{os.getpid()}"
        self.ready_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            HELPER_ENV: str(os.getpid()),
            KEY_ENV: main_key(),
            READY_ENV: str(self.ready_file),
            "PYTHONUNBUFFERED": "1",
        }
        for i, device in enumerate(devices[1:], start=1):
            path = sweep_dir / f"worker-{i}.log"
            own = env if device is None else {**env, GPU_ENV: device}
            with open(path, "ab") as out:
                # a session of its own: a Ctrl-C reaches it once, forwarded by stop()
                proc = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=own, start_new_session=True
                )
            self.procs.append((proc, path))
        where = "" if all(d is None for d in devices) else f" on GPUs {devices[1:]}"
        log.info(
            "%d more local worker process(es) on this study%s (logs: %s)",
            n,
            where,
            ", ".join(str(p) for _, p in self.procs),
        )

    def ready(self, ok: bool = True) -> None:
        """Tell the helpers that the study and the MLflow parent run exist (or that they never
        will: the main worker failed, and they exit)."""
        if self.procs:
            tmp = self.ready_file.with_suffix(".tmp")
            tmp.write_text("ok" if ok else "failed")
            tmp.replace(self.ready_file)

    def wait(self, timeout: float | None = None) -> list[str]:
        """Wait for every helper; one line per helper that did not end well."""
        problems = []
        for proc, path in self.procs:
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                problems.append(f"local worker pid {proc.pid} exited with code {code}; see {path}")
        self.procs = []
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        return problems

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the helpers (each fails and re-enqueues its running trial) and wait."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for problem in self.wait(timeout):
            log.debug(problem)


def await_main() -> bool:
    """In a helper: import what a trial needs while the main worker creates the stores, then wait
    for its go. False when the main worker failed or is gone (the helper then has nothing to do)."""
    import sweep.train.loop  # noqa: F401 - torch, transformers, datasets: seconds, in parallel

    path = os.environ.get(READY_ENV)
    if not path:
        return True
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return Path(path).read_text() == "ok"
        except FileNotFoundError:
            pass
        if not main_alive():
            return False
        time.sleep(0.2)
    return False
