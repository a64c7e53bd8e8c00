"""The study's bookkeeping in-process, in seconds: the lock, budget counting, failing trials of
dead workers and retrying them (the end-to-end versions, with real worker processes, are in
test_sweeper.py, test_retry.py and test_team.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import optuna
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
