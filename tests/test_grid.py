"""`hydra.sweeper.sampler=grid`: every point of choice(...) x range(...) exactly once, across local
workers and resumes; n_trials defaults to the grid's size; a continuous interval is refused.

.venv/bin/python -m pytest tests/test_grid.py            # -m "not slow": the in-process ones
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import optuna
import pytest
from conftest import TINY, compose, mlflow_client, run_train, runs_of, start_train, study_if_made
from optuna.trial import TrialState
from test_bad_input import assert_no_store, assert_one_error_line, bad_run

from sweep.search import grid
from sweep.search import study as study_mod
from sweep.search.study import PID, RETRY_OF, counted
from sweep.search.sweeper import build_space

EXPERIMENT = "tiny-synthetic"
# tiny trials (10 steps, evaluated every 5), a beat a second, no stale trial on a loaded machine
SWEEP = [
    "-m",
    *TINY,
    "data.max_train_samples=160",
    "data.max_eval_samples=64",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=120",
    "hydra.sweeper.pruner=none",
]
# the grid: two learning rates x two seeds; the default search's scheduler is pinned,
# so its conditional warm-up and power intervals are never active and stay out of the grid
GRID = [
    "hydra.sweeper.sampler=grid",
    "optimizer.lr=choice(1e-4,3e-4)",
    "trainer.seed=range(0,2)",
    "scheduler=constant",
]
PRODUCT = {(lr, seed) for lr in (1e-4, 3e-4) for seed in (0, 1)}


def _space(params=None, cli=(), conditions=None):
    return build_space(params or {}, list(cli), conditions or {})[0]


def _keys(points):
    return sorted(grid.key(p) for p in points)


# --------------------------------------------------------------------------- the points


def test_grid_is_the_product_of_choices_and_ranges_each_point_once():
    space = _space(cli=["optimizer.lr=choice(1e-4,3e-4)", "trainer.seed=range(0,3)"])
    points = grid.points(space)
    assert len(points) == 6
    assert {(p["optimizer.lr"], p["trainer.seed"]) for p in points} == set(
        itertools.product((1e-4, 3e-4), (0, 1, 2))
    )
    # the order is shuffled by hydra.sweeper.seed (a short budget samples the whole grid), and
    # the same seed gives the same order (a resumed sweep enqueues in the same order)
    assert grid.points(space, seed=0) == points
    orders = {tuple(grid.key(p) for p in grid.points(space, seed=s)) for s in range(5)}
    assert len(orders) > 1
    # int(interval(...)) is finite: each integer; a repeated choice is one point
    space = _space(cli=["trainer.train_batch_size=int(interval(2,4))", "x=choice(a,a,b)"])
    assert _keys(grid.points(space)) == _keys(
        {"trainer.train_batch_size": n, "x": x} for n in (2, 3, 4) for x in "ab"
    )


def test_conditional_parameters_join_a_point_only_where_their_condition_holds():
    space = _space(
        {
            "scheduler": "choice(constant,linear,polynomial)",
            "scheduler.warmup_ratio": "choice(0.0,0.1)",
            "scheduler.power": "choice(1.0,2.0)",
        },
        conditions={
            "scheduler.warmup_ratio": {"scheduler": ["linear", "polynomial"]},
            "scheduler.power": {"scheduler": ["polynomial"]},
        },
    )
    points = grid.points(space)
    # constant: 1; linear: 2 warm-ups; polynomial: 2 warm-ups x 2 powers. Not 3 x 2 x 2 = 12:
    # no two points train the same configuration
    assert len(points) == 7 and len({grid.key(p) for p in points}) == 7
    assert {"scheduler": "constant"} in points
    assert {"scheduler": "linear", "scheduler.warmup_ratio": 0.1} in points
    assert sum(p["scheduler"] == "polynomial" for p in points) == 4
    assert all(("scheduler.power" in p) == (p["scheduler"] == "polynomial") for p in points)


@pytest.mark.parametrize(
    "spelling,kind",
    [("interval(0.0,0.2)", "interval(...)"), ("tag(log, interval(1e-5,1e-3))", "tag(log")],
)
def test_a_continuous_interval_in_a_grid_is_refused_by_name(spelling, kind):
    space = _space(
        {"scheduler": "choice(constant,linear)", "scheduler.warmup_ratio": spelling},
        conditions={"scheduler.warmup_ratio": {"scheduler": ["linear"]}},
    )
    with pytest.raises(grid.GridError, match="scheduler.warmup_ratio is a continuous") as e:
        grid.points(space)
    assert kind in str(e.value) and "choice(...) or range(...)" in str(e.value)
    # pinned to a schedule that never uses it, the interval is in no point: no refusal
    space = _space(
        {"scheduler": "choice(constant,linear)", "scheduler.warmup_ratio": spelling},
        cli=["scheduler=constant", "optimizer.lr=choice(1e-4,3e-4)"],
        conditions={"scheduler.warmup_ratio": {"scheduler": ["linear"]}},
    )
    assert _keys(grid.points(space)) == _keys([{"optimizer.lr": 1e-4}, {"optimizer.lr": 3e-4}])


def test_a_grid_too_large_to_mean_it_is_refused():
    space = _space(cli=["a=range(0,200)", "b=range(0,200)"])
    with pytest.raises(grid.GridError, match="more than 10000 points"):
        grid.points(space)


def test_n_trials_defaults_to_the_grid_size_and_never_exceeds_it(capsys):
    four = [{"x": i} for i in range(4)]
    assert grid.budget(None, None) == (12, "")  # unset, no grid: the old default
    assert grid.budget(5, None) == (5, "")
    assert grid.budget(None, four) == (4, "")
    assert grid.budget(2, four) == (2, "")  # a smaller budget runs part of the grid
    n, note = grid.budget(9, four)
    assert n == 4 and "n_trials=9 is more than the grid's 4 points" in note
    # the composed config leaves n_trials unset (null): 12 for tpe, the grid's size for grid
    sweeper = compose([*TINY, GRID[0], GRID[3]], with_hydra=True).hydra.sweeper
    assert sweeper.n_trials is None
    space = _space(cli=GRID[1:])
    points, n_trials = grid.plan(sweeper, space)
    assert n_trials == 4 and len(points) == 4
    sweeper.n_trials = 7
    assert grid.plan(sweeper, space)[1] == 4
    assert (
        "note: hydra.sweeper.n_trials=7 is more than the grid's 4 points" in capsys.readouterr().err
    )
    sweeper.sampler, sweeper.n_trials = "tpe", None
    assert grid.plan(sweeper, space) == (None, 12)
    sweeper.sampler, sweeper.enqueue = "grid", [{"optimizer.lr": 1e-4}]
    with pytest.raises(grid.GridError, match="enqueue does not combine with sampler=grid"):
        grid.plan(sweeper, space)


# --------------------------------------------------------------------------- the queue


def _study(tmp_path, name="g"):
    spec = study_mod.StudySpec(
        name=name, storage_url=f"journal://{tmp_path / 'g.journal'}", sampler="grid"
    )
    return spec, study_mod.create_or_load(spec)


def _ask(study, spec, space):
    """What the sweeper's _ask does for one grid trial, under the study lock."""
    with study_mod.StudyLock(spec.storage_url, spec.name):
        if study_mod.count(study).waiting == 0:
            return None
        study.sampler = study_mod.make_sampler(spec)
        trial = study.ask()
        space.suggest(trial)
        return trial


def test_each_enqueued_point_runs_once_through_failures_kills_and_re_runs(tmp_path):
    space = _space(cli=["optimizer.lr=choice(1e-4,3e-4)", "trainer.seed=range(0,3)"])
    points = grid.points(space)
    spec, study = _study(tmp_path)
    # a first run killed while enqueueing held 2 points; the re-run adds the 4 others only
    assert grid.enqueue(study, points[:2]) == 2
    assert grid.enqueue(study, points) == 4
    assert grid.enqueue(study, points) == 0
    # a second worker process: its own Study object on the same journal
    _, other = _study(tmp_path)
    a = _ask(study, spec, space)
    study.tell(a, 0.5)
    b = _ask(other, spec, space)
    other.tell(b, state=TrialState.FAIL)  # its worker died: retried with its params
    study_mod.retry(other, other.trials[b.number], 1)
    c = _ask(study, spec, space)  # left RUNNING, as by a SIGKILL
    # a re-run enqueues nothing: the running, the failed-and-retried and the done points are held
    assert grid.enqueue(other, points) == 0
    trials = []
    for worker in itertools.cycle((study, other)):
        t = _ask(worker, spec, space)
        if t is None:
            break
        worker.tell(t, 0.1)
        trials.append(t)
    study.tell(c, 0.2)
    done = counted(study.get_trials())
    assert len(done) == 6
    assert sorted(grid.key(t.params) for t in done) == _keys(points)
    retry = next(t for t in study.get_trials() if RETRY_OF in t.system_attrs)
    assert retry.params == study.trials[b.number].params
    # the queue is empty: the grid's sampler refuses to draw a point of its own
    study.sampler = study_mod.make_sampler(spec)
    with pytest.raises(RuntimeError, match="sampler=grid: trial 7 has no grid point"):
        space.suggest(study.ask())


def test_warm_started_trials_hold_no_point_of_the_grid(tmp_path):
    space = _space(cli=["trainer.seed=range(0,2)"])
    spec, study = _study(tmp_path)
    study.add_trial(
        optuna.trial.create_trial(
            params={"trainer.seed": 0},
            distributions=dict(space.distributions),
            value=0.7,
            user_attrs={grid.IMPORTED: "earlier-study"},
        )
    )
    # imported from an earlier sweep, it ran elsewhere: both points are still enqueued
    assert grid.enqueue(study, grid.points(space)) == 2


# --------------------------------------------------------------------------- real sweeps


def _point(t):
    return (t.params["optimizer.lr"], t.params["trainer.seed"])


def test_a_continuous_interval_in_a_grid_sweep_is_one_error_line(workdir):
    # the default search's learning rate is an interval: the one line names it, nothing is made
    rc, errors, stdout, seconds = bad_run(
        ["-m", *TINY, "hydra.sweeper.sampler=grid", "scheduler=constant"], workdir
    )
    needles = ["sampler=grid", "optimizer.lr is a continuous tag(log, interval(...))"]
    assert_one_error_line(rc, errors, stdout, seconds, needles, "grid over an interval")
    assert_no_store(workdir)


@pytest.mark.slow
def test_two_local_workers_run_each_grid_point_once(workdir):
    proc = run_train([*SWEEP, *GRID, "hydra.sweeper.n_workers=2"], workdir, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    study = study_if_made(workdir, EXPERIMENT)
    # n_trials was not given: the grid's 4 points, each run once, and nothing more
    # the study's identity records the sampler: a tpe sweep of this space is another study
    assert json.loads(study.user_attrs["sweep.identity_doc"])["sweeper"]["sampler"] == "grid"
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(_point(t) for t in study.trials) == sorted(PRODUCT)
    assert len({t.system_attrs[PID] for t in study.trials}) == 2  # both workers ran points
    assert "4/4 finished" in proc.stdout and "/12 finished" not in proc.stdout
    runs = runs_of(mlflow_client(workdir), EXPERIMENT)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    pairs = {
        (float(r.data.params["optimizer.lr"]), int(r.data.params["trainer.seed"])) for r in children
    }
    assert len(children) == 4 and pairs == PRODUCT
    # the same command again: the study is resumed, and it holds every point already
    again = run_train([*SWEEP, *GRID, "hydra.sweeper.n_workers=2"], workdir, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:]
    assert len(study_if_made(workdir, EXPERIMENT).trials) == 4


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_grid_sweep_resumes_to_each_point_once(workdir, sig):
    # 30-step trials: the signal lands inside a trial once the first has finished and the next
    # has reported an evaluation (step 5 of 30; a moment polled for, not slept)
    args = [*SWEEP, *GRID, "data.train_size=480", "data.max_train_samples=480"]
    proc = start_train(args, workdir)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        study = study_if_made(workdir, EXPERIMENT)
        trials = study.trials if study else []
        finished = sum(t.state.is_finished() for t in trials)
        training = any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)
        if finished >= 1 and training:
            break
    else:
        raise AssertionError((workdir / "train.log").read_text()[-3000:])
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=60) == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    again = run_train(args, workdir, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:]
    study = study_if_made(workdir, EXPERIMENT)
    done = counted(study.trials)
    assert len(done) == 4 and sorted(_point(t) for t in done) == sorted(PRODUCT)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    # the trial the signal interrupted is the only one run again, with its own point
    (retry,) = [t for t in study.trials if RETRY_OF in t.system_attrs]
    interrupted = study.trials[int(retry.system_attrs[RETRY_OF])]
    assert interrupted.state == TrialState.FAIL and _point(interrupted) == _point(retry)
    assert len(study.trials) == 5
    assert "4/4 finished" in again.stdout
