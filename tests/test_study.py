"""The study's bookkeeping in-process, in seconds: the lock, budget counting, failing trials of
dead workers and retrying them (the end-to-end versions, with real worker processes, are in
test_sweeper.py, test_retry.py and test_team.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweep.core import internals
from sweep.search import study as study_mod
from sweep.search.study import FAIL_REASON, HEARTBEAT, PID, RETRIES, RETRY_OF

LR = FloatDistribution(1e-5, 1e-1, log=True)
# a PID no process can have: above the kernel's limit, so os.kill says it does not exist
NO_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def journal(tmp_path: Path) -> str:
    return f"journal:///{tmp_path / 'study.journal'}"


def new_study(url: str) -> optuna.Study:
    storage = study_mod.open_storage(url)
    return optuna.create_study(study_name="s", storage=storage, load_if_exists=True)


def running(study: optuna.Study, lr: float, pid: int, heartbeat: float | None = None):
    trial = study.ask({"optimizer.lr": FloatDistribution(lr, lr)})
    store, tid = internals.storage(study), internals.trial_id(trial)
    study_mod.claim(store, tid)
    store.set_trial_system_attr(tid, PID, pid)
    if heartbeat is not None:
        store.set_trial_system_attr(tid, HEARTBEAT, heartbeat)
    return trial


def test_the_lock_excludes_other_holders_and_is_reentrant(tmp_path):
    url = journal(tmp_path)
    mine, theirs = study_mod.StudyLock(url, "s"), study_mod.StudyLock(url, "s")
    got = threading.Event()

    def take():
        with theirs:
            got.set()

    with mine, mine:  # re-entering does not deadlock
        worker = threading.Thread(target=take)
        worker.start()
        assert not got.wait(0.5), "a second holder entered while the lock was held"
    assert got.wait(10), "the lock was not released"
    worker.join()
    assert study_mod.StudyLock(url, "other").path != mine.path  # one lock per study


def test_the_budget_counts_a_retried_failure_once_through_its_retry(tmp_path):
    study = new_study(journal(tmp_path))
    done = study.ask({"optimizer.lr": LR})
    study.tell(done, 0.5)
    pruned = study.ask({"optimizer.lr": LR})
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask({"optimizer.lr": LR})
    study.tell(failed, state=TrialState.FAIL)
    lost = study.ask({"optimizer.lr": LR})
    study.tell(lost, state=TrialState.FAIL)
    study_mod.retry(study, study.trials[lost.number], 1)
    c = study_mod.count(study)
    assert (c.complete, c.pruned, c.failures, c.running, c.waiting) == (1, 1, 1, 0, 1)
    assert c.finished == 3  # the lost trial counts through its retry, not yet finished
    retry = study.ask({"optimizer.lr": LR})  # the retry is popped before any new point
    assert retry.params["optimizer.lr"] == lost.params["optimizer.lr"]
    assert study_mod.count(study).running == 1
    study.tell(retry, 0.7)
    c = study_mod.count(study)
    assert (c.complete, c.failures, c.running, c.waiting, c.finished) == (2, 1, 0, 0, 4)


def test_trials_of_dead_or_silent_workers_fail_and_are_retried_with_their_params(tmp_path):
    study = new_study(journal(tmp_path))
    now = time.time()
    dead = running(study, 1e-4, NO_PID, heartbeat=now)
    silent = running(study, 2e-4, os.getpid(), heartbeat=now - 100)
    alive = running(study, 3e-4, os.getpid(), heartbeat=now)
    worn = running(study, 4e-4, NO_PID, heartbeat=now)
    internals.storage(study).set_trial_system_attr(internals.trial_id(worn), RETRIES, 2)
    # own pid is never taken for dead: the silent trial fails by its heartbeat alone
    failed = study_mod.fail_stale(study, grace_period=30, max_retries=2)
    assert sorted(failed) == sorted([dead.number, silent.number, worn.number])
    trials = study.get_trials()
    assert trials[alive.number].state == TrialState.RUNNING
    for t in (dead, silent, worn):
        assert trials[t.number].state == TrialState.FAIL
        assert trials[t.number].system_attrs[FAIL_REASON] == "worker died"
    retries = {t.system_attrs[RETRY_OF]: t for t in trials if t.state == TrialState.WAITING}
    assert sorted(retries) == sorted([dead.number, silent.number])  # `worn` used up its retries
    for number, t in retries.items():
        assert t.system_attrs["fixed_params"] == trials[number].params
        assert t.system_attrs[RETRIES] == 1
    assert study_mod.fail_stale(study, grace_period=30, max_retries=2) == []  # once only


def test_a_trial_told_by_its_worker_is_not_failed_again(tmp_path):
    study = new_study(journal(tmp_path))
    trial = running(study, 1e-4, NO_PID, heartbeat=time.time())
    other = new_study(journal(tmp_path))  # another worker's handle, loaded before the tell
    study.tell(trial, 0.9)
    assert study_mod.fail_stale(other, grace_period=30, max_retries=2) == []
    assert other.trials[trial.number].state == TrialState.COMPLETE


def test_a_jobs_context_holds_no_password_and_a_local_job_gets_it_back(monkeypatch):
    from sweep.core import trial_env
    from sweep.core.config import strip_uri_password, uri_has_password

    url = "postgresql://optuna:p%40ss:w@db:5432/optuna"
    bare = strip_uri_password(url)
    assert bare == "postgresql://optuna@db:5432/optuna" and not uri_has_password(bare)
    key, token = trial_env.override(trial_env.TRIAL, {"spec": bare, "number": 3}).split("=", 1)
    assert key == "+hydra.job.env_set.SWEEP_TRIAL" and "p%40ss" not in token
    monkeypatch.setenv(trial_env.TRIAL, token)
    assert trial_env.from_env(trial_env.TRIAL) == {"spec": bare, "number": 3}
    # a job on the sweeper's machine inherits its URL (with the password); elsewhere, the node's
    # own PGPASSWORD / ~/.pgpass serve the bare URL
    assert trial_env.with_local_password(bare) == bare
    monkeypatch.setenv(trial_env.STORAGE_URL, url)
    assert trial_env.with_local_password(bare) == url
    assert trial_env.with_local_password("postgresql://other@db/x") == "postgresql://other@db/x"
    assert strip_uri_password("journal:///a/b:c@d") == "journal:///a/b:c@d"


def test_only_cluster_launchers_get_the_remote_checks(tmp_path):
    from sweep.core.errors import UserError
    from sweep.engines.ray import RayLauncher
    from sweep.engines.slurm import SlurmLauncher
    from sweep.search import remote

    assert remote.engine_of(object()) is None
    assert remote.engine_of(RayLauncher()) == "ray"
    assert remote.engine_of(SlurmLauncher()) == "slurm"
    assert remote.this_host_only(f"journal://{tmp_path}/s.journal")
    assert remote.this_host_only("http://127.0.0.1:5000") and remote.this_host_only("sqlite:///x")
    assert not remote.this_host_only("postgresql://optuna@db-host/optuna")
    with pytest.raises(UserError, match="PGPASSWORD"):
        remote.check(SlurmLauncher(), "postgresql://u:pw@db/optuna", None)
    with pytest.raises(UserError, match="MLFLOW_TRACKING_PASSWORD"):
        remote.check(SlurmLauncher(), "postgresql://u@db/optuna", "http://u:pw@mlflow:5000")
    remote.check(object(), "postgresql://u:pw@db/optuna", None)  # local launchers: allowed
