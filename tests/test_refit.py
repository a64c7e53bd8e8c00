"""Refit (`hydra.sweeper.confirm.refit=true`, sweep/search/refit.py) and the data key it runs
with (`data.train_on_validation`), on real Hydra multiruns, a real journal study and a real MLflow
SQLite store and Model Registry.

.venv/bin/python -m pytest tests/test_refit.py
"""

from __future__ import annotations

import math

import pytest
from conftest import TINY, compose, mlflow_client, run_train, runs_of, sweep_cli, sweep_study

from sweep.core.config import ConfigError, data_config
from sweep.search import refit
from sweep.train.data import load_raw

EXPERIMENT = "tiny-synthetic"
TRAIN, VALIDATION, TEST = 160, 64, 80  # the tiny sweeps' split sizes
SWEEP = [
    "-m",
    *TINY,
    f"data.max_train_samples={TRAIN}",
    f"data.max_eval_samples={VALIDATION}",
    f"data.test_size={TEST}",
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.confirm.top_k=2",
    "hydra.sweeper.confirm.seeds=1",
]
REFIT = "hydra.sweeper.confirm.refit=true"
# a plain run of the tiny model on the same data
RUN = [a for a in TINY if not a.startswith("hydra.")] + [f"data.test_size={TEST}"]


def _errors(proc) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("error:")]


def _by_role(runs) -> dict[str, list]:
    out: dict[str, list] = {"parent": [], "trial": [], "confirm": [], "refit": []}
    for r in runs:
        out[r.data.tags.get("sweep.role") or "trial"].append(r)
    return out


# --------------------------------------------------------------------------- the data key


def test_train_on_validation_appends_the_held_out_validation_split_to_train():
    d = {"name": "synthetic", "train_size": 300, "eval_size": 100, "seed": 3}
    d |= {"max_train_samples": TRAIN, "max_eval_samples": VALIDATION}
    plain = load_raw(d)
    merged = load_raw({**d, "train_on_validation": True})
    # exactly the examples the plain run trains and validates on (after the subsets), no more
    assert len(merged.train) == TRAIN + VALIDATION and len(merged.validation) == 0
    for column in ("text", "label"):
        both = list(plain.train[column]) + list(plain.validation[column])
        assert list(merged.train[column]) == both, column
    assert merged.label_names == plain.label_names
    assert merged.fingerprint != plain.fingerprint and "train_on_validation" in merged.source
    assert set(merged.digests) == {"train"} and "plus_validation" in merged.origin["train"][1]


def test_train_on_validation_needs_a_test_split():
    for d in (
        {"name": "synthetic", "test_size": 0},
        {"name": "files", "train_file": "train.csv"},
        {"name": "imdb", "hub_id": "x/y", "test_split": None},
    ):
        with pytest.raises(ConfigError, match="data.train_on_validation=true .* have none"):
            data_config({**d, "train_on_validation": True})
    data_config({"name": "files", "train_file": "a.csv", "test_file": "b.csv"})


def test_a_sweep_refuses_trials_on_the_test_split_and_a_refit_without_one():
    class Opts:  # hydra.sweeper.* as check_search reads it
        confirm = {"refit": True, "top_k": 2}

    base = compose(["model=tiny"])
    refit.check_search(base, {"optimizer.lr"}, Opts)  # the default data have a test split
    with pytest.raises(ConfigError, match="cannot be set in a sweep"):
        refit.check_search(base, {refit.KEY}, Opts)
    with pytest.raises(ConfigError, match="cannot be set in a sweep"):
        refit.check_search(compose(["model=tiny", refit.OVERRIDE]), set(), Opts)
    no_test = compose(["model=tiny", "data.test_size=0"])
    with pytest.raises(ConfigError, match="confirm.refit=true scores the refit on the test split"):
        refit.check_search(no_test, set(), Opts)
    Opts.confirm = {"refit": True, "top_k": 0}  # confirmation off: nothing to refit, no error
    refit.check_search(no_test, set(), Opts)


def test_the_key_is_not_part_of_a_sweeps_identity():
    from sweep.search import identity

    doc = identity.describe(compose(["model=tiny"]), {}, {}, {})
    assert "data.train_on_validation" not in doc["config"] and "data.max_length" in doc["config"]


def test_the_refit_context_reaches_its_job_and_names_its_run(tmp_path, monkeypatch):
    from sweep.core import trial_env

    ctx = refit.RefitContext("study", "p" * 32, "w" * 32, 3, 1042, str(tmp_path))
    key, token = ctx.override().split("=", 1)
    assert key == f"+hydra.job.env_set.{trial_env.REFIT}" and trial_env.is_context(ctx.override())
    monkeypatch.setenv(trial_env.REFIT, token)
    assert refit.RefitContext.from_env() == ctx
    assert ctx.tags()["sweep.role"] == "refit" and ctx.tags()[refit.OF] == "w" * 32
    assert ctx.run_name("tiny lr=0.001 linear") == "refit trial-3 seed=1042 tiny lr=0.001 linear"
    winner = ["model=tiny", "trainer.threads=1", "optimizer.lr=0.1"]
    config = refit.config_overrides(winner, 1042, 2)
    assert config == [
        "model=tiny",
        "optimizer.lr=0.1",
        "trainer.threads=2",
        "trainer.seed=1042",
        "data.train_on_validation=true",
    ]
    assert refit.job_line(config, ctx)[-1] == ctx.override()


# --------------------------------------------------------------------------- plain runs


@pytest.mark.slow
def test_a_plain_run_on_train_and_validation_is_scored_once_on_test_and_reproduces(workdir):
    refused = run_train([*RUN, refit.OVERRIDE, "data.test_size=0"], workdir)
    assert refused.returncode == 2 and len(_errors(refused)) == 1, refused.stdout[-3000:]
    assert "data.train_on_validation" in _errors(refused)[0]
    assert not (workdir / "mlflow.db").exists()  # refused before any run

    proc = run_train([*RUN, refit.OVERRIDE], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    client = mlflow_client(workdir)
    (run,) = runs_of(client, EXPERIMENT)
    assert run.info.status == "FINISHED" and run.data.tags["sweep.status"] == "completed"
    steps = int(run.data.tags["sweep.steps"])
    assert steps == math.ceil((TRAIN + VALIDATION) / 16)  # one epoch of both splits, batch 16
    assert not [k for k in run.data.metrics if k.startswith("eval_")]  # nothing to validate on
    for key in ("test_loss", "test_accuracy", "test_f1"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [steps], key  # once, at the last step
    assert refit.train_examples(run) == TRAIN + VALIDATION
    contexts = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context")
        for i in run.inputs.dataset_inputs
    }
    assert contexts == {"train", "test"}

    again = sweep_cli(["reproduce", run.info.run_id], workdir, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "test_f1" in again.stdout and "OK: the reproduced metrics match" in again.stdout


# --------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_a_sweep_refuses_train_on_validation_before_any_trial(workdir):
    proc = run_train([*SWEEP, refit.OVERRIDE], workdir)
    assert proc.returncode == 2 and len(_errors(proc)) == 1, proc.stdout[-3000:]
    assert "cannot be set in a sweep" in _errors(proc)[0]
    proc = run_train([*SWEEP, REFIT, "data.test_size=0"], workdir)
    assert proc.returncode == 2 and len(_errors(proc)) == 1, proc.stdout[-3000:]
    assert "refit=true scores the refit on the test split" in _errors(proc)[0]
    if (workdir / "mlflow.db").exists():  # the store may exist; no run was started in it
        client = mlflow_client(workdir)
        exp = client.get_experiment_by_name(EXPERIMENT)
        assert exp is None or not client.search_runs([exp.experiment_id])


def _check_refit_run(client, parent, winner, run) -> None:
    """What a refit run must be: a FINISHED child of the parent, of the winner's config and seed
    on train + validation, scored on the test split once, at its last step."""
    t, p = run.data.tags, run.data.params
    assert run.info.status == "FINISHED" and t["sweep.status"] == "completed"
    assert t["mlflow.parentRunId"] == parent.info.run_id
    assert t["sweep.refit"] == "true" and t[refit.OF] == winner.info.run_id
    assert t["optuna.study"] == parent.data.tags["optuna.study"]
    assert p["trainer.seed"] == winner.data.params["trainer.seed"]
    assert p["optimizer.lr"] == winner.data.params["optimizer.lr"]
    assert p["data.train_on_validation"] == "True"
    assert winner.data.params.get("data.train_on_validation") in ("False", None)
    assert refit.train_examples(run) == TRAIN + VALIDATION
    assert refit.train_examples(winner) == TRAIN
    steps = int(t["sweep.steps"])
    assert steps == math.ceil((TRAIN + VALIDATION) / 16) > int(winner.data.tags["sweep.steps"])
    assert not [k for k in run.data.metrics if k.startswith("eval_")]
    for key in ("test_loss", "test_accuracy", "test_f1"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [steps]


def _check_champion(client, parent, winner, run) -> None:
    version = client.get_model_version_by_alias(EXPERIMENT, "champion")
    assert version.run_id == run.info.run_id  # the refit's model is the champion
    assert version.tags[refit.TAG] == "true" and version.tags[refit.OF] == winner.info.run_id
    assert "Refit of the sweep's winner" in version.description
    assert run.data.tags["sweep.model"] == f"models:/{EXPERIMENT}/{version.version}"
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags[refit.PARENT_TAG] == run.info.run_id
    assert parent.data.tags["sweep.model"] == run.data.tags["sweep.model"]
    assert parent.data.metrics["refit_test_f1"] == run.data.metrics["test_f1"]
    assert parent.data.metrics["test_f1"] == winner.data.metrics["test_f1"]  # the winner's, apart


@pytest.mark.slow
def test_refit_off_then_on_a_failed_registration_and_reruns(workdir):
    """refit=false leaves the sweep as it was; the same command with refit=true refits the
    finished sweep (nothing else runs again); a refit whose model cannot be logged is one error
    line and exit 1 with the winner still the champion; the next run registers the refit without
    training it again, and one more changes nothing."""
    off = run_train(SWEEP, workdir, timeout=600)
    assert off.returncode == 0, off.stdout[-4000:]
    client = mlflow_client(workdir)
    runs = _by_role(runs_of(client, EXPERIMENT))
    assert not runs["refit"] and len(runs["trial"]) == 3 and len(runs["confirm"]) == 2
    (parent,) = runs["parent"]
    assert refit.PARENT_TAG not in parent.data.tags and "refit of" not in off.stdout
    (winner,) = [r for r in runs["confirm"] if r.data.tags.get("sweep.winner") == "true"]
    assert client.get_model_version_by_alias(EXPERIMENT, "champion").run_id == winner.info.run_id

    # the artifact store refuses the refit's model: a file where models/ should be
    blocker = workdir / "mlartifacts" / EXPERIMENT / "models"
    moved = blocker.with_name("models.kept")
    blocker.rename(moved)
    blocker.write_text("not a folder")
    failed = run_train([*SWEEP, REFIT], workdir, timeout=600)
    assert failed.returncode == 1, failed.stdout[-4000:]
    errors = _errors(failed)
    assert len(errors) == 1 and "the refit of the winner failed" in errors[0], errors
    (trained,) = _by_role(runs_of(client, EXPERIMENT))["refit"]
    _check_refit_run(client, parent, winner, trained)  # it trained and was scored
    assert client.get_model_version_by_alias(EXPERIMENT, "champion").run_id == winner.info.run_id
    assert len(client.search_model_versions(f"name='{EXPERIMENT}'")) == 1

    blocker.unlink()
    moved.rename(blocker)
    for _ in range(2):  # registers the refit, then finds everything done
        again = run_train([*SWEEP, REFIT], workdir, timeout=600)
        assert again.returncode == 0, again.stdout[-4000:]
        runs = _by_role(runs_of(client, EXPERIMENT))
        assert [r.info.run_id for r in runs["refit"]] == [trained.info.run_id]  # not refitted
        assert len(runs["trial"]) == 3 and len(runs["confirm"]) == 2
        assert len(sweep_study(workdir, EXPERIMENT).trials) == 3
        assert len(client.search_model_versions(f"name='{EXPERIMENT}'")) == 2
        _check_champion(client, parent, winner, client.get_run(trained.info.run_id))
    assert "champion: models:/tiny-synthetic/2 (the refit" in again.stdout

    best = sweep_cli(["best", "--experiment", EXPERIMENT], workdir)
    assert best.returncode == 0 and f"refit:      {trained.info.run_id}" in best.stdout
    rep = sweep_cli(["reproduce", trained.info.run_id], workdir, timeout=600)
    assert rep.returncode == 0 and "test_f1" in rep.stdout, rep.stdout + rep.stderr


@pytest.mark.slow
def test_a_sweep_with_local_workers_refits_its_winner(workdir):
    """Two local workers (each trial on a share of the cores), confirmation, then the refit: one
    job on every core, its model the champion."""
    proc = run_train([*SWEEP, REFIT, "hydra.sweeper.n_workers=2"], workdir, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    client = mlflow_client(workdir)
    runs = _by_role(runs_of(client, EXPERIMENT))
    (parent,) = runs["parent"]
    (winner,) = [r for r in runs["confirm"] if r.data.tags.get("sweep.winner") == "true"]
    (run,) = runs["refit"]
    _check_refit_run(client, parent, winner, run)
    _check_champion(client, parent, winner, run)
    assert winner.data.params["trainer.threads"] == "1"  # a worker's share
    assert int(run.data.params["trainer.threads"]) >= 1
    assert "refit of trial" in proc.stdout and "champion: models:/tiny-synthetic/" in proc.stdout


def test_only_a_finished_refit_run_counts(tmp_path):
    """An interrupted (KILLED) or failed refit run is not found, so the next run refits again."""
    from sweep.track import tracking

    client = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("x", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp, tags={"sweep.role": "parent"}).info.run_id
    ctx = refit.RefitContext("s", parent, "w" * 32, 0, 1042, str(tmp_path))
    tags = {**ctx.tags(), "mlflow.parentRunId": parent}
    for status in ("KILLED", "FAILED"):
        client.set_terminated(client.create_run(exp, tags=tags).info.run_id, status)
    assert refit.find(client, exp, parent, "w" * 32) is None
    done = client.create_run(exp, tags=tags).info.run_id
    client.set_terminated(done, "FINISHED")
    assert refit.find(client, exp, parent, "w" * 32).info.run_id == done
    assert refit.find(client, exp, parent, "v" * 32) is None  # another winner's: none
