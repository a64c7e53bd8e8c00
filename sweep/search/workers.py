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
from pathlib import Path
from typing import Any

from sweep.core import trial_env
from sweep.core.config import parse_n_workers
from sweep.core.overrides import to_override

log = logging.getLogger(__name__)

HELPER_ENV = trial_env.HELPER_OF
READY_ENV = trial_env.HELPER_READY
KEY_ENV = trial_env.HELPER_KEY
MAX_AUTO = 4
READY_TIMEOUT = 600.0
# device nodes of NVIDIA, ROCm and WSL GPUs: without any of them torch sees no GPU, and the main
# worker need not import torch (seconds) before it starts the helpers
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


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


def resolve(setting: Any, *, device: str, in_process: bool, remaining: int) -> int:
    """How many workers to run here. "auto": one per core (at most 4) on a machine without a GPU
    with the basic launcher; 1 on a GPU (trials would share it) or with a parallel launcher."""
    n = parse(setting)
    if n is None:
        if not in_process or device == "cuda":
            return 1
        if device == "auto" and gpu_present():
            return 1
        n = min(MAX_AUTO, cores())
    return max(1, min(n, remaining))


def gpu_present() -> bool:
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in GPU_NODES):
        return False
    import torch

    return torch.cuda.is_available()


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

    def start(self, n: int, sweep_dir: Path, threads: int | None) -> None:
        """Start `n` helpers. They import torch and transformers meanwhile and wait for ready()
        before they touch a store (a fresh MLflow SQLite store must be created by one process)."""
        cmd = helper_command(sweep_dir, threads)
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
        for i in range(1, n + 1):
            path = sweep_dir / f"worker-{i}.log"
            with open(path, "ab") as out:
                # a session of its own: a Ctrl-C reaches it once, forwarded by stop()
                proc = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            self.procs.append((proc, path))
        log.info(
            "%d more local worker process(es) on this study (logs: %s)",
            n,
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
