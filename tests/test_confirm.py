"""Confirmation, the winner, its test metrics and its registered model (sweep/search/confirm.py),
on real Hydra multiruns, a real journal study and a real MLflow SQLite store and registry.

.venv/bin/python -m pytest tests/test_confirm.py
"""

from __future__ import annotations

import csv
import math
import os
import random
import signal
import statistics
import time
from pathlib import Path

import pytest
from conftest import (
    PRUNING,
    TINY,
    mlflow_client,
    run_train,
    runs_of,
    start_train,
    study_if_made,
    sweep_cli,
    sweep_study,
)

from sweep.search import confirm as cf

EXPERIMENT = "tiny-synthetic"
SWEEP = [
    "-m",
    *TINY,
    "data.max_train_samples=160",
    "data.max_eval_samples=64",
    "data.test_size=80",
    "trainer.train_batch_size=16",
    "trainer.eval_every=5",
    "hydra.sweeper.n_trials=4",
]
CONFIRM = ["hydra.sweeper.confirm.top_k=2", "hydra.sweeper.confirm.seeds=2"]


def _roles(runs):
    out: dict[str, list] = {"parent": [], "trial": [], "confirm": []}
    for r in runs:
        role = r.data.tags.get("sweep.role")
        out["parent" if role == "parent" else "confirm" if role == "confirm" else "trial"].append(r)
    return out


def _value(run) -> float:
    return float(run.data.tags["sweep.objective.eval_f1"])


# --------------------------------------------------------------------------- units


def test_the_winner_is_chosen_by_its_new_seeds_alone():
    a = cf.Candidate(number=0, run_id="a", value=0.95, params={"optimizer.lr": 1e-4})
    b = cf.Candidate(number=1, run_id="b", value=0.80, params={"optimizer.lr": 2e-4})
    seeds = [1042, 1043]
    done = {
        ("a", 1042): cf.Done("a", 1042, "a1", 0.60, 10),
        ("a", 1043): cf.Done("a", 1043, "a2", 0.70, 10),
        ("b", 1042): cf.Done("b", 1042, "b1", 0.72, 10),
        ("b", 1043): cf.Done("b", 1043, "b2", 0.74, 10),
    }
    choice = cf.choose([a, b], seeds, done, "maximize")
    assert choice.winner.candidate is b  # a's search value was higher: it does not count
    assert choice.winner.mean == pytest.approx(0.73)
    assert choice.winner.std == pytest.approx(statistics.stdev([0.72, 0.74]))
    assert choice.winner_run.run_id == "b2"  # the winning configuration's best seed
    # minimise: the lower mean wins
    assert cf.choose([a, b], seeds, done, "minimize").winner.candidate is a
    # a run that diverged (NaN) ranks its configuration last
    done[("b", 1043)] = cf.Done("b", 1043, "b2", math.nan, 10)
    assert cf.choose([a, b], seeds, done, "maximize").winner.candidate is a
    # a missing run: no winner until it is done
    del done[("a", 1042)]
    choice = cf.choose([a, b], seeds, done, "maximize")
    assert choice.winner is None and choice.missing == [(0, 1042)]


def test_context_token_survives_a_hydra_override(tmp_path):
    ctx = cf.ConfirmContext("exp/with: odd chars", "p" * 32, "r" * 32, 7, 1043, str(tmp_path))
    key, token = ctx.override().split("=", 1)
    assert key == "+hydra.job.env_set.SWEEP_CONFIRM"
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    os.environ["SWEEP_CONFIRM"] = token
    try:
        assert cf.ConfirmContext.from_env() == ctx
    finally:
        del os.environ["SWEEP_CONFIRM"]
    assert 42 not in cf.seeds_for(42, 5) and len(set(cf.seeds_for(42, 5))) == 5
    assert cf.registry_name("team/a:b") == "team-a-b"


# --------------------------------------------------------------------------- end to end


def _check_datasets(run, contexts: set[str]) -> None:
    inputs = run.inputs.dataset_inputs
    got = {next(t.value for t in i.tags if t.key == "mlflow.data.context") for i in inputs}
    assert got == contexts, (run.info.run_name, got)
    for i in inputs:
        assert i.dataset.digest and i.dataset.name == "synthetic"


@pytest.mark.slow
def test_confirmed_winner_is_tested_registered_and_served(workdir):
    proc = run_train([*SWEEP, *CONFIRM], workdir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    client = mlflow_client(workdir)
    runs = _roles(runs_of(client, EXPERIMENT))
    assert len(runs["parent"]) == 1 and len(runs["trial"]) == 4 and len(runs["confirm"]) == 4
    parent = runs["parent"][0]
    study = sweep_study(workdir, EXPERIMENT)

    # the confirmation runs: children of the parent, of the 2 best complete trials, 2 new seeds
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    top2 = sorted(complete, key=lambda t: (-t.value, t.number))[:2]
    top_ids = {t.user_attrs["mlflow_run_id"] for t in top2}
    assert {r.data.tags["sweep.confirms"] for r in runs["confirm"]} == top_ids
    for r in runs["confirm"]:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.data.tags["sweep.confirm.seed"] in ("1042", "1043")  # trainer.seed=42 + 1000 + i
        assert r.data.params["trainer.seed"] == r.data.tags["sweep.confirm.seed"]
        assert r.info.status == "FINISHED" and "optuna.state" not in r.data.tags
        assert int(r.data.tags["sweep.steps"]) == 10  # full runs: never pruned
    # they are not trials: the study holds the 4 trials of the budget and nothing else
    assert len(study.trials) == 4

    # the winner: the best mean over the new seeds, computed here from MLflow alone
    by_config: dict[str, list[float]] = {}
    for r in runs["confirm"]:
        by_config.setdefault(r.data.tags["sweep.confirms"], []).append(_value(r))
    best_mean = max(statistics.fmean(v) for v in by_config.values())
    winners = [
        r for r in runs["confirm"] + runs["trial"] if r.data.tags.get("sweep.winner") == "true"
    ]
    assert len(winners) == 1
    winner = winners[0]
    assert statistics.fmean(by_config[winner.data.tags["sweep.confirms"]]) == best_mean
    # test metrics on the winner only
    tested = [r for r in runs["confirm"] + runs["trial"] if "test_f1" in r.data.metrics]
    assert [r.info.run_id for r in tested] == [winner.info.run_id]
    for key in ("test_loss", "test_accuracy", "test_f1"):
        assert math.isfinite(winner.data.metrics[key])

    # the parent carries the result; its progress curves are monotonic
    for key in ("eval_f1", "eval_accuracy", "eval_loss", "test_f1"):
        assert parent.data.metrics[key] == pytest.approx(winner.data.metrics[key])
    confirmed = next(
        t for t in top2 if t.user_attrs["mlflow_run_id"] == winner.data.tags["sweep.confirms"]
    )
    assert parent.data.tags["winner.optimizer.lr"] == str(confirmed.params["optimizer.lr"])
    assert parent.data.tags["sweep.winner_run_id"] == winner.info.run_id
    for name in ("trials_finished", "trials_pruned", "best_value"):
        hist = sorted(client.get_metric_history(parent.info.run_id, name), key=lambda m: m.step)
        assert [m.value for m in hist] == sorted(m.value for m in hist), name
    finished = client.get_metric_history(parent.info.run_id, "trials_finished")
    assert all(m.value == m.step for m in finished)

    # datasets and source on every run
    for r in runs["trial"] + runs["confirm"]:
        want = {"train", "validation", "test"} if r is winner else {"train", "validation"}
        _check_datasets(r, want)
    for r in runs["parent"] + runs["trial"] + runs["confirm"]:
        assert r.data.tags["mlflow.source.name"] == "train.py", r.info.run_name
        assert r.data.tags["mlflow.source.type"] == "LOCAL"

    # the registered model: champion -> the winner's run; it loads offline and predicts the
    # validation texts as the run evaluated them (training evaluates under bf16 autocast on some
    # CPUs, the pyfunc in fp32: one sample may flip)
    import mlflow
    import numpy as np
    import pandas as pd

    from sweep.train.data import load_raw

    version = client.get_model_version_by_alias(EXPERIMENT, "champion")
    assert version.run_id == winner.info.run_id
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{EXPERIMENT}@champion")
    raw = load_raw(
        {"name": "synthetic", "train_size": 160, "eval_size": 64, "max_eval_samples": 64}
    )
    predicted = model.predict(pd.DataFrame({"text": raw.validation["text"]}))
    assert list(predicted.columns) == ["label", "probabilities"]
    truth = [raw.label_names[y] for y in raw.validation["label"]]
    accuracy = float(np.mean(predicted["label"].to_numpy() == np.asarray(truth)))
    assert abs(accuracy - winner.data.metrics["eval_accuracy"]) <= 1 / 64 + 1e-9

    # re-running the finished sweep runs nothing and registers nothing new
    again = run_train([*SWEEP, *CONFIRM], workdir, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:]
    assert len(runs_of(client, EXPERIMENT)) == 9
    assert len(client.search_model_versions(f"name='{EXPERIMENT}'")) == 1

    # the winner reproduces from its logged config
    rep = sweep_cli(["reproduce", winner.info.run_id], workdir, timeout=600)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    best = sweep_cli(["best", "--experiment", EXPERIMENT], workdir)
    assert best.returncode == 0 and f"winner:     {winner.info.run_id}" in best.stdout

    # a new sweep of the same experiment (another search seed: another study) moves the alias;
    # the older version stays
    other = run_train([*SWEEP, *CONFIRM, "hydra.sweeper.seed=1"], workdir, timeout=600)
    assert other.returncode == 0, other.stdout[-4000:]
    versions = client.search_model_versions(f"name='{EXPERIMENT}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    champion = client.get_model_version_by_alias(EXPERIMENT, "champion")
    assert str(champion.version) == "2" and champion.run_id != winner.info.run_id


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


@pytest.mark.slow
def test_test_labels_never_steer_the_search(tmp_path, offline_env):
    """Two sweeps that differ only in the test split's labels (shuffled in the second), with a
    pruner that prunes, run the same trials with the same params and outcomes, confirm the same
    configurations and choose the same winner; only the winner's test metrics differ."""
    from sweep.train.synthetic import generate_reviews

    names = ["negative", "positive"]

    def rows(n, stream):
        texts, labels = generate_reviews(n, 3, 0.0, stream=stream)
        return [(t, names[y]) for t, y in zip(texts, labels, strict=True)]

    data = tmp_path / "data"
    data.mkdir()
    _write_csv(data / "train.csv", rows(1600, "train"))
    _write_csv(data / "val.csv", rows(64, "eval"))
    test = rows(80, "test")
    _write_csv(data / "test.csv", test)
    labels = [y for _, y in test]
    random.Random(1).shuffle(labels)
    _write_csv(data / "test-shuffled.csv", [(t, y) for (t, _), y in zip(test, labels, strict=True)])

    results = []
    for name in ("test.csv", "test-shuffled.csv"):
        work = tmp_path / name.split(".")[0]
        work.mkdir()
        args = [
            "-m",
            *TINY,
            "data=files",
            f"data.train_file={data / 'train.csv'}",
            f"data.validation_file={data / 'val.csv'}",
            f"data.test_file={data / name}",
            "hydra.sweeper.n_trials=6",
            *PRUNING,
            "hydra.sweeper.pruner_startup_trials=2",
            # 200 steps: the tiny model learns the reviews at lr 1e-3 (~0.7 accuracy), so the
            # winner predicts both classes and its test F1 depends on the test labels
            "trainer.max_steps=200",
            "trainer.eval_every=25",
            "hydra.sweeper.enqueue=[{optimizer.lr:1e-3}]",
            "hydra.sweeper.confirm.top_k=2",
            "hydra.sweeper.confirm.seeds=1",
        ]
        proc = run_train(args, work, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:]
        experiment = "tiny-files"
        study = sweep_study(work, experiment)
        runs = runs_of(mlflow_client(work), experiment)
        winner = [r for r in runs if r.data.tags.get("sweep.winner") == "true"]
        assert len(winner) == 1
        results.append(
            {
                "params": [t.params for t in study.trials],
                "states": [t.state.name for t in study.trials],
                "values": [t.value for t in study.trials],
                "confirmed": sorted(
                    r.data.tags["sweep.confirm.trial"]
                    for r in runs
                    if r.data.tags.get("sweep.role") == "confirm"
                ),
                "winner": (
                    winner[0].data.tags["sweep.confirm.trial"],
                    winner[0].data.tags["sweep.confirm.seed"],
                ),
                "test_f1": winner[0].data.metrics["test_f1"],
            }
        )
    a, b = results
    assert "PRUNED" in a["states"], a["states"]  # the pruner acted on what it was told
    assert a["params"] == b["params"] and a["states"] == b["states"]
    assert a["values"] == b["values"] and a["confirmed"] == b["confirmed"]
    assert a["winner"] == b["winner"]
    assert a["test_f1"] != b["test_f1"]  # the test labels did differ, and were scored


@pytest.mark.slow
def test_interrupted_confirmation_resumes_without_repeating_runs(workdir):
    args = [
        *SWEEP,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.confirm.top_k=1",
        "hydra.sweeper.confirm.seeds=4",
        "trainer.max_steps=40",
    ]
    log = workdir / "train.log"
    proc = start_train(args, workdir, log=log)
    client, first = None, None
    deadline = time.time() + 300
    try:
        # the moment to interrupt: a confirmation run under way, after one finished and before
        # the last began (4 seeds run one after another: at most 2 finished and 1 running leave
        # one to start), so the Ctrl-C always meets unfinished confirmation work
        while first is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if not (workdir / "mlflow.db").exists():
                continue
            client = client or mlflow_client(workdir)
            exp = client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                continue
            confirms = client.search_runs(
                [exp.experiment_id], filter_string="tags.`sweep.role` = 'confirm'"
            )
            done = [r for r in confirms if r.info.status == "FINISHED"]
            running = [r for r in confirms if r.info.status == "RUNNING"]
            if done and running and len(done) <= 2:
                first = done[0]
        assert first is not None, log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal: the whole process group
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = _roles(runs_of(client, EXPERIMENT))
    finished_before = {r.info.run_id for r in runs["confirm"] if r.info.status == "FINISHED"}
    assert first.info.run_id in finished_before and len(finished_before) < 4
    assert not [r for r in runs["confirm"] if r.info.status == "RUNNING"]
    assert not [
        r for r in runs["trial"] + runs["confirm"] if r.data.tags.get("sweep.winner") == "true"
    ]

    again = run_train(args, workdir, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:]
    runs = _roles(runs_of(client, EXPERIMENT))
    finished = [r for r in runs["confirm"] if r.info.status == "FINISHED"]
    seeds = sorted(r.data.tags["sweep.confirm.seed"] for r in finished)
    assert seeds == ["1042", "1043", "1044", "1045"]  # each seed once: none repeated
    assert finished_before <= {r.info.run_id for r in finished}
    assert sum(r.data.tags.get("sweep.winner") == "true" for r in finished) == 1


@pytest.mark.slow
def test_confirm_command_on_a_finished_sweep(workdir):
    proc = run_train(SWEEP, workdir, timeout=600)  # confirmation off (TINY)
    assert proc.returncode == 0, proc.stdout[-4000:]
    client = mlflow_client(workdir)
    assert not _roles(runs_of(client, EXPERIMENT))["confirm"]
    out = sweep_cli(
        ["confirm", "--experiment", EXPERIMENT, "--top", "2", "--seeds", "1"], workdir, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    runs = _roles(runs_of(client, EXPERIMENT))
    assert len(runs["confirm"]) == 2
    for r in runs["confirm"]:
        assert r.data.tags["mlflow.source.name"] == "python -m sweep confirm"
        assert r.data.tags["mlflow.parentRunId"] == runs["parent"][0].info.run_id
    winner = [r for r in runs["confirm"] if r.data.tags.get("sweep.winner") == "true"]
    assert len(winner) == 1 and "test_f1" in winner[0].data.metrics
    assert client.get_model_version_by_alias(EXPERIMENT, "champion").run_id == winner[0].info.run_id
    assert runs["parent"][0].data.tags["sweep.winner_run_id"] == winner[0].info.run_id
    # asked again with one seed more: only the new seed runs
    more = sweep_cli(
        ["confirm", "--experiment", EXPERIMENT, "--top", "2", "--seeds", "2"], workdir, timeout=600
    )
    assert more.returncode == 0, more.stdout + more.stderr
    assert len(_roles(runs_of(client, EXPERIMENT))["confirm"]) == 4
    bad = sweep_cli(["confirm", "--experiment", "no-such-experiment"], workdir)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_workers_of_one_study_confirm_it_once(workdir):
    """A team sweep: two `python train.py -m` workers on one study; one of them confirms (the
    other ends once the trials are done), so each run is made once and one model is registered."""
    args = [*SWEEP, "hydra.sweeper.confirm.top_k=2", "hydra.sweeper.confirm.seeds=1"]
    procs = [start_train(args, workdir, log=workdir / f"worker{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (workdir / f"worker{i}.log").read_text()[-3000:]
    client = mlflow_client(workdir)
    runs = _roles(runs_of(client, EXPERIMENT))
    assert len(runs["parent"]) == 1 and len(runs["trial"]) == 4
    assert len(runs["confirm"]) == 2
    assert sorted(r.data.tags["sweep.confirm.seed"] for r in runs["confirm"]) == ["1042", "1042"]
    assert sum(r.data.tags.get("sweep.winner") == "true" for r in runs["confirm"]) == 1
    assert len(client.search_model_versions(f"name='{EXPERIMENT}'")) == 1


# --------------------------------------------------------------------------- team sweeps


def test_a_helper_reads_its_own_main_workers_plan_whatever_lands_after_it(tmp_path):
    """The interleaving that hung a team sweep, forced in order on a real study: the leader
    publishes its jobs, the other main worker (which does not lead) its empty plan, and only
    then does the leader's helper look. Each wait ends with what it waits for."""
    import optuna

    from sweep.search import confirm_stage as cs
    from sweep.search.study import StudyLock, open_storage

    url = f"journal://{tmp_path / 'team.journal'}"
    study = optuna.create_study(study_name="team", storage=open_storage(url))
    lock = StudyLock(url, "team")
    cs.publish_plan(study, lock, "host-11-aa", [(3, 1042), (1, 1042)])
    cs.publish_plan(study, lock, "host-22-bb", [])
    assert cs.await_plan(study, "host-11-aa", alive=lambda: True) == [(3, 1042), (1, 1042)]
    assert cs.await_plan(study, "host-22-bb", alive=lambda: True) == []  # nothing: ends at once

    # no plan yet: the helper waits while its main worker lives, and reads the plan once it is
    # published; a main worker that ends without one ends the wait with nothing to do
    looks = []

    def publishes_on_the_third_look():
        looks.append(1)
        if len(looks) == 3:
            cs.publish_plan(study, lock, "host-33-cc", [(0, 1043)])
        return True

    assert cs.await_plan(study, "host-33-cc", publishes_on_the_third_look, poll=0.01) == [(0, 1043)]
    assert len(looks) == 3
    gone = []
    assert cs.await_plan(study, "host-44-dd", lambda: gone.append(1) and False, poll=0.01) == []
    assert len(gone) == 1


def _plans(study) -> dict[str, list]:
    from sweep.search import confirm_stage as cs

    prefix = cs.PLAN + "."
    attrs = study.user_attrs
    return {k[len(prefix) :]: v["jobs"] for k, v in attrs.items() if k.startswith(prefix)}


def _plan_adversary(work, stop, seen: list) -> None:
    """A third main worker that ends at the worst moment: as soon as a leader's plan is in the
    study, it publishes its own empty plan (the write that hid the leader's plan before)."""
    from sweep.search import confirm_stage as cs
    from sweep.search.study import StudyLock

    while not stop.is_set():
        study = study_if_made(work, EXPERIMENT)
        if study is not None and any(jobs for jobs in _plans(study).values()):
            url = f"journal://{work / '.sweep' / (EXPERIMENT + '.journal')}"
            cs.publish_plan(study, StudyLock(url, study.study_name), "adversary", [])
            seen.append(study.study_name)
            return
        stop.wait(0.02)


@pytest.mark.slow
def test_team_workers_with_local_helpers_confirm_once_every_time(tmp_path, offline_env):
    """Two `python train.py -m` workers on one study, each with a local helper, confirmation on,
    ending together, while a third worker's empty plan lands right after the leader's: every
    process ends, the leader's jobs are confirmed once, one model is registered. Three times."""
    import threading

    args = [
        *SWEEP,
        "hydra.sweeper.n_workers=2",
        "hydra.sweeper.confirm.top_k=2",
        "hydra.sweeper.confirm.seeds=1",
    ]
    for attempt in range(3):
        work = tmp_path / f"attempt-{attempt}"
        work.mkdir()
        stop, seen = threading.Event(), []
        adversary = threading.Thread(target=_plan_adversary, args=(work, stop, seen))
        adversary.start()
        procs = [start_train(args, work, log=work / f"worker{i}.log") for i in range(2)]
        try:
            for i, p in enumerate(procs):
                assert p.wait(timeout=600) == 0, (work / f"worker{i}.log").read_text()[-3000:]
        finally:
            stop.set()
            adversary.join()
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
        assert seen, "the leader's plan never appeared in the study"
        for log in work.glob("multirun/*/*/worker-*.log"):  # the helpers ended well too
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
        plans = _plans(sweep_study(work, EXPERIMENT))
        plans.pop("adversary")
        # one plan per main worker: the leader's with both jobs, the other's empty
        assert sorted(len(jobs) for jobs in plans.values()) == [0, 2], plans
        client = mlflow_client(work)
        runs = _roles(runs_of(client, EXPERIMENT))
        assert len(runs["trial"]) == 4 and len(runs["confirm"]) == 2
        assert all(r.info.status == "FINISHED" for r in runs["confirm"])
        assert sum(r.data.tags.get("sweep.winner") == "true" for r in runs["confirm"]) == 1
        assert len(client.search_model_versions(f"name='{EXPERIMENT}'")) == 1


# --------------------------------------------------------------------------- registration


@pytest.mark.slow
def test_a_failed_registration_keeps_the_winner_and_a_rerun_registers_it(workdir):
    """The artifact store refuses the model (its folder blocked by a file, a real OSError):
    the winner stays FINISHED with its test metrics, the sweep says so in one line and exits 1;
    the same command again registers it without scoring the test split a second time."""
    args = [*SWEEP, "hydra.sweeper.n_trials=2", "hydra.sweeper.confirm.top_k=1"]
    args += ["hydra.sweeper.confirm.seeds=1"]
    # a logged model's files go to <experiment's artifact folder>/models/<model id>/: a file
    # where that folder should be makes every write there fail
    blocker = workdir / "mlartifacts" / EXPERIMENT / "models"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    first = run_train(args, workdir, timeout=600)
    assert first.returncode == 1, first.stdout[-4000:]
    errors = [line for line in first.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not registered (NotADirectoryError" in errors[0], errors
    client = mlflow_client(workdir)
    (winner,) = [r for r in runs_of(client, EXPERIMENT) if r.data.tags.get("sweep.winner")]
    assert winner.data.tags["sweep.winner"] == "true" and winner.info.status == "FINISHED"
    assert math.isfinite(winner.data.metrics["test_f1"]) and "sweep.model" not in winner.data.tags
    assert not client.search_model_versions(f"name='{EXPERIMENT}'")

    blocker.unlink()
    again = run_train(args, workdir, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:]
    winner = client.get_run(winner.info.run_id)
    assert winner.info.status == "FINISHED" and winner.data.tags["sweep.model"]
    assert client.get_model_version_by_alias(EXPERIMENT, "champion").run_id == winner.info.run_id
    assert len(client.get_metric_history(winner.info.run_id, "test_f1")) == 1  # scored once
    runs = _roles(runs_of(client, EXPERIMENT))
    assert len(runs["confirm"]) == 1  # the seed was not repeated
    parent = runs["parent"][0]
    assert len(client.get_metric_history(parent.info.run_id, "test_f1")) == 1
