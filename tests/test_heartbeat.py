"""A dead worker on another host is found by its heartbeat's age alone.

On one host a dead worker is caught at once by the same-host process check (its PID is gone).
Here the dying worker runs under another host name (its own UTS namespace, `unshare --uts`), so
for the surviving worker that shortcut cannot apply: only the trial's silent heartbeat, older
than `grace_period`, fails it, and its retry runs with its params.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings

import pytest
from conftest import TINY, TRAIN, start_train, study_if_made, sweep_study
from optuna.trial import TrialState
from services import unavailable

from sweep.search import study as study_mod

pytestmark = pytest.mark.slow

GRACE = 8
ARGS = [
    "-m",
    *TINY,
    "data.train_size=3200",
    "data.max_train_samples=3200",
    "trainer.eval_every=20",
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.heartbeat_interval=1",
    f"hydra.sweeper.grace_period={GRACE}",
]


def _other_host(cmd: list[str]) -> list[str] | None:
    """`cmd` in a UTS namespace of its own whose host name is not this one; None if this
    machine does not allow it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ([unshare, "--uts"], [unshare, "-r", "--uts"]):
        probe = subprocess.run(
            [*prefix, "sh", "-c", "hostname other-host && hostname"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == "other-host":
            script = 'hostname other-host && exec "$@"'
            return [*prefix, "sh", "-c", script, "sh", *cmd]
    return None


def _running_on(workdir, host: str, timeout: float, proc):
    """A RUNNING trial claimed by a worker on `host` that has reported an evaluation."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = study_if_made(workdir, "tiny-synthetic")
        if study is None:
            continue
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if t.system_attrs.get(study_mod.HOST) == host and t.intermediate_values:
                return t
    return None


def test_a_worker_dead_on_another_host_is_failed_by_its_heartbeat_age(workdir):
    cmd = _other_host([sys.executable, str(TRAIN), *ARGS])
    if cmd is None:
        unavailable("cannot start a process under another host name (unshare --uts)")
    log = open(workdir / "other.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    other = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    here = None
    try:
        victim = _running_on(workdir, "other-host", 180, other)
        assert victim is not None, (workdir / "other.log").read_text()[-3000:]
        # a worker on this host joins the sweep and takes the other trial
        here = start_train(ARGS, workdir)
        assert _running_on(workdir, socket.gethostname(), 180, here) is not None
        os.killpg(other.pid, signal.SIGKILL)  # the other host's worker dies mid-trial
        other.wait(timeout=30)
        killed_at = time.time()
        # this host's worker sees the trial RUNNING; the dead worker's PID means nothing here
        # (another host), so only the heartbeat's age can fail it
        assert here.wait(timeout=300) == 0, (workdir / "train.log").read_text()[-3000:]
    finally:
        for p in (other, here):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        log.close()
    out = (workdir / "train.log").read_text()
    study = sweep_study(workdir, "tiny-synthetic")
    lost = study.trials[victim.number]
    assert lost.state == TrialState.FAIL
    assert lost.system_attrs[study_mod.FAIL_REASON] == "worker died"
    silent = re.search(rf"trial {victim.number}: its worker died \(silent (\d+)s\)", out)
    assert silent, out[-3000:]
    assert int(silent.group(1)) >= GRACE
    last_beat = float(lost.system_attrs[study_mod.HEARTBEAT])
    assert last_beat <= killed_at
    failed_after = lost.datetime_complete.timestamp() - last_beat
    # never before the grace period (this worker looks between its own trials, so maybe later)
    assert failed_after >= GRACE, failed_after
    retries = [t for t in study.trials if t.system_attrs.get(study_mod.RETRY_OF) == lost.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == lost.params
    assert study_mod.count(study).finished == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))
