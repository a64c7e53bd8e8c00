"""`sweep.search.study.retry`: a failed trial's retry is one atomic write, safe without the study
lock.

Real Optuna storages, real processes: workers that fail their trials and retry them at the same
moment (`interrupt` does so without the lock) must each get a retry pointing at their own trial,
with its params, and the budget must count every retried FAIL once, through its retry.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweep.search import study as study_mod
from sweep.search.study import RETRIES, RETRY_OF
from sweep.search.sweeper import SearchSpace


def _space() -> SearchSpace:
    return SearchSpace(
        distributions={
            "optimizer.lr": FloatDistribution(1e-5, 1e-1, log=True),
            "scheduler": CategoricalDistribution(["cosine", "linear", "constant"]),
            "trainer.train_batch_size": IntDistribution(8, 64, step=8),
            "warmup": FloatDistribution(0.0, 0.5),
        },
        # a conditional param: only suggested (and so only retried) for some schedules
        conditions={"warmup": {"scheduler": ["cosine", "linear"]}},
    )


def _study(url: str, seed: int = 0) -> optuna.Study:
    return optuna.create_study(
        study_name="retry",
        storage=study_mod.open_storage(url),
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        load_if_exists=True,
    )


def _worker(url: str, barrier, rounds: int, seed: int, out) -> None:
    """Each round: ask a trial (a retry waiting from the last round, or a new one), then fail it
    and retry it at the same moment as every other worker.

    Asking takes the study lock, as the sweeper does (two sqlite processes asking at once can
    pop the same WAITING trial: SQLite ignores Optuna's SELECT ... FOR UPDATE); failing and
    retrying does not, as in `interrupt`."""
    try:
        study = _study(url, seed)
        space = _space()
        lock = study_mod.StudyLock(url, study.study_name)
        for _ in range(rounds):
            barrier.wait()
            with lock:
                trial = study.ask()
                params = space.suggest(trial)
            barrier.wait()  # everyone holds a RUNNING trial: fail and retry together
            study.tell(trial, state=TrialState.FAIL)
            frozen = study._storage.get_trial(trial._trial_id)
            study_mod.retry(study, frozen, int(frozen.system_attrs.get(RETRIES, 0)) + 1)
            out.put(("asked", trial.number, params))
        out.put(("done", None, None))
    except BaseException:  # noqa: BLE001 - reported to the test, not lost in the child
        barrier.abort()
        out.put(("error", None, traceback.format_exc()))


def _storage_url(kind: str, tmp_path) -> str:
    if kind == "journal":
        return f"journal://{tmp_path / 'retry.journal'}"
    return f"sqlite:///{tmp_path / 'retry.db'}"


# sqlite: fewer, as its writers that collide back off for up to 2 s (Optuna's RDB retry)
@pytest.mark.parametrize(("kind", "workers", "rounds"), [("journal", 6, 6), ("sqlite", 4, 4)])
def test_concurrent_retries_point_at_their_own_trials(kind, workers, rounds, tmp_path):
    url = _storage_url(kind, tmp_path)
    _study(url)  # created once, before the workers race to load it
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers, timeout=60)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, barrier, rounds, i, out)) for i in range(workers)
    ]
    for p in procs:
        p.start()
    asked: dict[int, dict] = {}
    try:
        done = 0
        while done < workers:
            what, number, params = out.get(timeout=120)
            assert what != "error", params
            if what == "done":
                done += 1
            else:
                assert number not in asked, f"trial {number} was asked by two workers"
                asked[number] = params
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()

    study = _study(url)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    failed = {n for n, t in trials.items() if t.state == TrialState.FAIL}
    waiting = {n for n, t in trials.items() if t.state == TrialState.WAITING}
    assert failed == set(asked)
    assert len(failed) == workers * rounds
    assert len(waiting) == workers and len(trials) == workers * (rounds + 1)

    # every trial but the first round's was made by `retry`, and carries both tags
    retries = {n: t for n, t in trials.items() if RETRY_OF in t.system_attrs}
    assert len(retries) == workers * rounds, "a retry was left untagged (or tagged twice)"
    assert all(RETRIES in t.system_attrs for t in retries.values())
    # each FAIL is retried exactly once, and only FAILs are
    targets = Counter(int(t.system_attrs[RETRY_OF]) for t in retries.values())
    assert set(targets) == failed
    assert all(n == 1 for n in targets.values()), targets.most_common(3)
    for n, t in retries.items():
        original = trials[int(t.system_attrs[RETRY_OF])]
        assert original.number < n
        assert int(t.system_attrs[RETRIES]) == int(original.system_attrs.get(RETRIES, 0)) + 1
        if t.state == TrialState.FAIL:  # asked in a later round: it ran the original's params
            assert t.params == original.params == asked[original.number]
    # every retried trial in this study was asked again, so the chains run back to the first
    # round: each retry of the last round is its original's last try (its rounds-th)
    assert sorted(int(trials[n].system_attrs[RETRIES]) for n in waiting) == [rounds] * workers

    # the budget: every FAIL counts through its retry, none as a failure
    c = study_mod.count(study)
    assert (c.complete, c.pruned, c.failures, c.running, c.waiting) == (0, 0, 0, 0, workers)
    assert study_mod.counted(list(trials.values())) == []

    # the waiting retries, asked the sweeper's way, run their originals' params
    space = _space()
    for _ in range(workers):
        trial = study.ask()
        assert trial.number in waiting
        original = trials[int(trials[trial.number].system_attrs[RETRY_OF])]
        assert space.suggest(trial) == original.params
        study.tell(trial, 1.0)
    c = study_mod.count(study)
    assert (c.complete, c.failures, c.waiting, c.finished) == (workers, 0, 0, workers)


def test_asked_retry_suggests_the_original_params(tmp_path):
    # journal only: the concurrent test asks sqlite's retries the same way at its end
    url = _storage_url("journal", tmp_path)
    study = _study(url, seed=3)
    space = _space()
    originals = []
    for _ in range(4):  # some with the conditional param, some without (seeded)
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, state=TrialState.FAIL)
        originals.append((trial.number, params))
    assert {("warmup" in p) for _, p in originals} == {True, False}
    for number, _ in originals:
        frozen = study.trials[number]
        study_mod.retry(study, frozen, 1)

    # another worker (its own Study and storage connection, another sampler seed) asks them in
    # order: tags intact, and the sweeper's suggest returns the originals' params, not samples
    other = _study(url, seed=99)
    for number, params in originals:
        trial = other.ask()
        frozen = other._storage.get_trial(trial._trial_id)
        assert frozen.system_attrs[RETRY_OF] == number and frozen.system_attrs[RETRIES] == 1
        assert space.suggest(trial) == params
        assert other._storage.get_trial(trial._trial_id).params == params
        other.tell(trial, 0.5)
    # the FAILs count through their retries
    assert study_mod.retried_numbers(other.trials) == {n for n, _ in originals}
    c = study_mod.count(other)
    assert (c.complete, c.failures, c.finished) == (4, 0, 4)
    # a new ask samples afresh (nothing else was enqueued)
    fresh = other.ask()
    assert RETRY_OF not in other._storage.get_trial(fresh._trial_id).system_attrs
