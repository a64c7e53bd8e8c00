"""One GPU per worker replica (docker/compose.gpu.yaml, docker/gpu-slot.py), without an engine.

    .venv/bin/python -m pytest tests/test_compose_gpu.py -q

- the compose files as compose merges them (PyYAML; `docker compose config` as well where the
  compose plugin is installed): every replica reserves all the GPUs and mounts the shared slot
  folder the entrypoint is told about, and the image provides that folder and the helper;
- the real entrypoint (docker/worker-entrypoint.sh -> docker/gpu-slot.py -> `python train.py`)
  runs as compose would start each replica, with stand-ins for `python train.py` (it records its
  arguments and environment and stays up while the test says so) and for torch's GPU count
  (a sitecustomize that installs a `torch` whose `cuda.device_count()` is $FAKE_GPUS): the
  CUDA_VISIBLE_DEVICES each replica ends up with, for different GPU counts, packings and
  `hydra.sweeper.gpus`; replicas that start together; a restarted replica; one replica too many
  and the other bad settings (one line, exit 2).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "worker-entrypoint.sh"
SLOTS_DIR = "/var/lib/sweep/gpu-slots"  # where compose.gpu.yaml mounts the slot volume


def cores() -> int:
    return len(os.sched_getaffinity(0))


# --------------------------------------------------------------------------- the compose files


def merge(base, override, key: str = ""):
    """`override` laid over `base` by the rules compose applies to the keys these files use:
    mappings merge key by key, a service's `volumes` merge by target, other values replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if key == "volumes" and isinstance(base, list) and isinstance(override, list):
        by_target = {str(v).split(":")[1]: v for v in base + override}
        return list(by_target.values())
    return override


@pytest.fixture(scope="module")
def project() -> dict:
    base = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return merge(base, yaml.safe_load((DOCKER / "compose.gpu.yaml").read_text()))


def check_gpu_worker(project: dict) -> None:
    worker = project["services"]["worker"]
    assert worker["image"].endswith("-cuda") and worker["build"]["args"]["VARIANT"] == "cuda"
    # every replica reserves every GPU; none is pinned to fixed ids or to `count: 1` (the same
    # first GPU in each replica)
    assert worker["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    ]
    env = worker["environment"]
    assert env["GPU_SLOTS_DIR"] == SLOTS_DIR
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    # the base worker's settings survive the override
    assert env["PG_PASSWORD_FILE"] == "/run/secrets/pg_password" and "SWEEP_ARGS" in env
    assert worker["entrypoint"] == ["sweep-worker"]
    assert "hydra.sweeper.n_workers=1" in worker["command"]
    # one named volume, shared by every replica, at the folder the entrypoint is told about
    mounts = [str(v) for v in worker["volumes"]]
    assert f"gpu-slots:{SLOTS_DIR}" in mounts
    assert "gpu-slots" in project["volumes"]


def test_compose_files_merged_give_each_replica_every_gpu_and_the_slot_volume(project):
    check_gpu_worker(project)


def test_docker_compose_config_agrees():
    docker = shutil.which("docker")
    plugin = docker and subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False
    )
    if not plugin or plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (the PyYAML merge is checked)")
    proc = subprocess.run(
        [docker, "compose", "-f", "compose.yaml", "-f", "compose.gpu.yaml"]
        + ["config", "--format", "json"],
        cwd=DOCKER,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    project = json.loads(proc.stdout)
    worker = project["services"]["worker"]
    # `docker compose config` writes the long forms: normalise them to the short ones
    worker["volumes"] = [f"{v['source']}:{v['target']}" for v in worker["volumes"]]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["count"] in ("all", -1), device  # compose's model writes `all` as -1
    device["count"] = "all"
    check_gpu_worker(project)


def test_the_image_has_the_helper_and_the_slot_folder():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    # beside sweep-worker, which finds it as "$(dirname "$0")/gpu-slot.py"
    assert "COPY docker/gpu-slot.py /usr/local/bin/gpu-slot.py" in dockerfile
    assert "/usr/local/bin/sweep-worker" in dockerfile
    # owned by the trainer user: an empty named volume mounted there takes the folder's owner
    # (the trainer stage's `install -d`, continuation lines included)
    trainer_dirs = re.search(r"install -d -o 10001 -g 10001 /work (?:[^\n&\\]|\\\n)*", dockerfile)
    assert trainer_dirs and SLOTS_DIR in trainer_dirs[0].split(), trainer_dirs
    assert "!docker/gpu-slot.py" in (DOCKER / "Dockerfile.dockerignore").read_text().split()


# --------------------------------------------------------------------------- the entrypoint

RECORDER = """\
import json, os, sys, time
with open(os.environ["RECORD"] + ".tmp", "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, f)
os.replace(os.environ["RECORD"] + ".tmp", os.environ["RECORD"])
hold, deadline = os.environ.get("HOLD"), time.monotonic() + 120
while hold and os.path.exists(hold) and time.monotonic() < deadline:
    time.sleep(0.05)
"""

# torch as the container's would count the GPUs, without any: sweep.core.devices.visible_gpus()
# asks torch.cuda.device_count() (NVML) once torch is imported
FAKE_TORCH = """\
import os, sys, types
if os.environ.get("FAKE_GPUS") is not None:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(
        device_count=lambda: int(os.environ["FAKE_GPUS"]), is_initialized=lambda: False
    )
    sys.modules["torch"] = torch
"""


class Host:
    """A GPU host as compose's replicas see it: a slot folder they share, `python` on PATH that
    runs everything but `python train.py`, which is the recorder."""

    def __init__(self, tmp_path: Path, gpus: int | None) -> None:
        self.tmp = tmp_path
        self.gpus = gpus
        self.slots = tmp_path / "gpu-slots"
        folder = tmp_path / "bin"
        folder.mkdir()
        (tmp_path / "record.py").write_text(RECORDER)
        python, record = shlex.quote(sys.executable), shlex.quote(str(tmp_path / "record.py"))
        stub = folder / "python"
        stub.write_text(
            "#!/bin/sh\n"
            f'if [ "${{1:-}}" = train.py ]; then shift; exec {python} {record} "$@"; fi\n'
            f'exec {python} "$@"\n'
        )
        stub.chmod(0o755)
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "sitecustomize.py").write_text(FAKE_TORCH)
        self.path = f"{folder}:/usr/bin:/bin"
        self.count = 0

    def start(self, sweep_args: str = "", hold: bool = True, **env: str) -> Replica:
        """Start one replica (`docker compose up --scale worker=N` starts N of these)."""
        self.count += 1
        name = f"replica-{self.count}"
        full = {
            "PATH": self.path,
            "HOME": str(self.tmp),
            "PYTHONPATH": str(self.tmp / "site"),
            "OPTUNA_STORAGE": "journal:///tmp/never-opened.journal",  # no database here
            "GPU_SLOTS_DIR": str(self.slots),
            "SWEEP_ARGS": sweep_args,
            "RECORD": str(self.tmp / f"{name}.json"),
            **({"FAKE_GPUS": str(self.gpus)} if self.gpus is not None else {}),
            **env,
        }
        if hold:
            full["HOLD"] = str(self.tmp / f"{name}.hold")
            Path(full["HOLD"]).touch()
        # compose.yaml's command for the worker
        command = ["-m", "tracking.uri=http://mlflow:5000", "hydra.sweeper.n_workers=1"]
        proc = subprocess.Popen(
            ["sh", str(ENTRYPOINT), *command],
            cwd=self.tmp,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Replica(proc, Path(full["RECORD"]), full.get("HOLD"))


class Replica:
    def __init__(self, proc: subprocess.Popen, record: Path, hold: str | None) -> None:
        self.proc, self.record, self.hold = proc, record, hold

    def worker(self, timeout: float = 60) -> dict:
        """What `python train.py` got: its argv and environment (once it has started)."""
        deadline = time.monotonic() + timeout
        while not self.record.exists():
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                pytest.fail(f"the replica exited {self.proc.returncode}: {err}")
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        return json.loads(self.record.read_text())

    def device(self) -> str:
        return self.worker()["env"]["CUDA_VISIBLE_DEVICES"]

    def stop(self) -> None:
        """The worker ends (a finished sweep, or a crash: the lock goes either way)."""
        if self.hold:
            Path(self.hold).unlink(missing_ok=True)
        self.proc.communicate(timeout=60)

    def failure(self) -> tuple[int, list[str]]:
        """Exit code and stderr lines of a replica that must not start a worker."""
        _, err = self.proc.communicate(timeout=60)
        assert not self.record.exists(), "a worker started"
        return self.proc.returncode, err.strip().splitlines()


def replicas_in_turn(host: Host, n: int, sweep_args: str = "") -> list[Replica]:
    out = []
    for _ in range(n):
        out.append(host.start(sweep_args))
        out[-1].worker()  # started and holding its slot before the next one comes
    return out


@pytest.mark.parametrize(
    ("gpus", "sweep_args", "expected"),
    [
        (1, "", ["0"]),
        (4, "", ["0", "1", "2", "3"]),
        # packing: two trials per GPU, dealt round-robin (as local workers are)
        (2, "hydra.sweeper.trials_per_gpu=2", ["0", "1", "0", "1"]),
        (3, "hydra.sweeper.trials_per_gpu=2", ["0", "1", "2", "0", "1", "2"]),
        # only some of the host's GPUs, by id
        (4, "hydra.sweeper.gpus=[1,3]", ["1", "3"]),
        (4, "hydra.sweeper.gpus=[2] hydra.sweeper.trials_per_gpu=3", ["2", "2", "2"]),
    ],
)
def test_each_replica_gets_its_slot_s_gpu(tmp_path, gpus, sweep_args, expected):
    host = Host(tmp_path, gpus)
    running = replicas_in_turn(host, len(expected), sweep_args)
    try:
        assert [r.device() for r in running] == expected
        # one more than GPUs x trials_per_gpu: one line, no worker, exit 2
        code, lines = host.start(sweep_args, hold=False).failure()
        assert code == 2 and len(lines) == 1, lines
        n = len(expected)
        assert lines[0].startswith(f"sweep-worker: every GPU slot is taken ({n} slot(s)")
        assert f"--scale worker={n}" in lines[0] and "trials_per_gpu" in lines[0]
    finally:
        for r in running:
            r.stop()


def test_replicas_that_start_together_take_different_gpus(tmp_path):
    host = Host(tmp_path, 4)
    together = [host.start() for _ in range(4)]
    try:
        assert sorted(r.device() for r in together) == ["0", "1", "2", "3"]
    finally:
        for r in together:
            r.stop()


def test_a_restarted_replica_takes_the_free_slot_again(tmp_path):
    host = Host(tmp_path, 3)
    running = replicas_in_turn(host, 3)
    try:
        running[1].stop()  # its worker ended (compose restarts the container)
        again = host.start()
        assert again.device() == "1"
        running[1] = again
        # each worker was still holding its slot: the next replica finds none
        assert host.start(hold=False).failure()[0] == 2
    finally:
        for r in running:
            r.stop()


def test_what_the_worker_is_told(tmp_path):
    host = Host(tmp_path, 2)
    args = "hydra.sweeper.gpus=[0,1] hydra.sweeper.trials_per_gpu=2 hydra.sweeper.n_trials=24"
    replica = host.start(args, hold=False)
    rec = replica.worker()
    replica.stop()
    # compose's command, the storage, SWEEP_ARGS, then what this replica is: the host's GPU ids
    # mean nothing to a worker that sees one GPU, so it is told to use the one it sees
    assert rec["argv"] == [
        "-m",
        "tracking.uri=http://mlflow:5000",
        "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}",
        "hydra.sweeper.trials_per_gpu=2",
        "hydra.sweeper.n_trials=24",
        "hydra.sweeper.gpus=auto",
        "hydra.sweeper.n_workers=1",
        f"trainer.threads={max(1, cores() // 4)}",  # its share: 4 slots on this host
    ]
    assert rec["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    # trainer.threads given: kept, none added
    (tmp_path / "b").mkdir()
    rec = Host(tmp_path / "b", 2).start("trainer.threads=3", hold=False).worker()
    assert [a for a in rec["argv"] if a.startswith("trainer.threads")] == ["trainer.threads=3"]


def test_gpu_slot_names_the_slot(tmp_path):
    host = Host(tmp_path, 2)
    per_gpu = "hydra.sweeper.trials_per_gpu=2"
    for slot, device in [("0", "0"), ("1", "1"), ("2", "0"), ("3", "1")]:
        replica = host.start(per_gpu, hold=False, GPU_SLOT=slot, GPU_SLOTS_DIR="")
        assert replica.device() == device
        replica.stop()
    assert not host.slots.exists(), "GPU_SLOT takes no lock"
    code, lines = host.start(per_gpu, hold=False, GPU_SLOT="4").failure()
    assert code == 2 and lines == [
        "sweep-worker: GPU_SLOT=4 but this host has 4 slot(s): the GPUs x "
        "hydra.sweeper.trials_per_gpu=2 (GPU_SLOT 0-3)"
    ]


@pytest.mark.parametrize(
    ("gpus", "sweep_args", "says"),
    [
        (
            0,
            "",
            "no GPU for this worker (hydra.sweeper.gpus=auto, trainer.device=auto, "
            "GPUs in this container: 0); GPU workers need the NVIDIA Container Toolkit",
        ),
        (2, "hydra.sweeper.gpus=none", "no GPU for this worker (hydra.sweeper.gpus=none"),
        (2, "trainer.device=cpu", "trainer.device=cpu"),
        (2, "hydra.sweeper.trials_per_gpu=0", "hydra.sweeper.trials_per_gpu must be >= 1, got 0"),
        (2, "hydra.sweeper.trials_per_gpu=two", "hydra.sweeper.trials_per_gpu must be an integer"),
        (2, "hydra.sweeper.gpus=[0,5]", "hydra.sweeper.gpus names GPU 5, but this machine shows 2"),
        (2, "hydra.sweeper.gpus=[0,", "cannot read 'hydra.sweeper.gpus=[0,'"),
        (0, "hydra.sweeper.gpus=[0]", "torch sees no CUDA GPU"),
    ],
)
def test_bad_settings_say_so_in_one_line(tmp_path, gpus, sweep_args, says):
    code, lines = Host(tmp_path, gpus).start(sweep_args, hold=False).failure()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("sweep-worker: ") and says in lines[0], lines[0]


def test_without_the_gpu_override_the_entrypoint_runs_the_worker_as_before(tmp_path):
    replica = Host(tmp_path, 2).start("trainer.threads=2", hold=False, GPU_SLOTS_DIR="")
    rec = replica.worker()
    assert "CUDA_VISIBLE_DEVICES" not in rec["env"]
    assert rec["argv"] == [
        "-m",
        "tracking.uri=http://mlflow:5000",
        "hydra.sweeper.n_workers=1",
        "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}",
        "trainer.threads=2",
    ]
