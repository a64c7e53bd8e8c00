"""`python -m sweep reproduce` and `python -m sweep best`: re-running logged trials from MLflow.

    .venv/bin/python -m pytest tests/test_reproduce.py

The commands run as real subprocesses against real SQLite MLflow stores in tmp dirs. One small
sweep (3 tiny trials) is shared by the module; the pure functions are tested in-process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, TINY, compose, mlflow_client, run_train, runs_of, sweep_cli

from sweep.cli.reproduce import (
    ReproduceError,
    _find_interpolations,
    compare,
    environment_drift,
    fill_masked,
    find_forbidden,
    masked_keys,
    parse_config_text,
    prepare_config,
    to_config,
)

EXPERIMENT = "tiny-synthetic"
METRICS = ("eval_loss", "eval_accuracy", "eval_f1")


def error_line(r) -> str:
    """The one `error: ...` line a failed command prints on stderr."""
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return lines[0]


def _offline(mp: pytest.MonkeyPatch, cache_dir: Path) -> None:
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        mp.setenv(key, "1")
    mp.setenv("SWEEP_CACHE_DIR", str(cache_dir))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, cache_dir) -> Path:
    """A directory holding the MLflow store of a finished 3-trial tiny sweep."""
    d = tmp_path_factory.mktemp("swept")
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, cache_dir)
        r = run_train(
            [
                "-m",
                *TINY,
                "hydra.sweeper.n_trials=3",
                "data.max_train_samples=160",
                "data.max_eval_samples=64",
            ],
            d,
        )
    assert r.returncode == 0, r.stdout[-4000:]
    return d


def best_flagged(client):
    runs = [r for r in runs_of(client, EXPERIMENT) if r.data.tags.get("optuna.best") == "true"]
    assert len(runs) == 1
    return runs[0]


def config_of(client, run_id: str) -> dict:
    exp = client.get_run(run_id).info.artifact_uri
    return yaml.safe_load((Path(exp) / "config.yaml").read_text())


def fake_run(client, experiment: str, config_text: str | None, finish: bool = True) -> str:
    """A run created directly through MlflowClient, optionally with a config.yaml artifact."""
    from sweep.track.tracking import get_or_create_experiment

    exp_id = get_or_create_experiment(client, client.tracking_uri, experiment)
    run = client.create_run(exp_id, run_name="fake")
    if config_text is not None:
        client.log_text(run.info.run_id, config_text, "config.yaml")
    client.log_metric(run.info.run_id, "eval_f1", 0.5, step=1)
    if finish:
        client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


# --------------------------------------------------------------------------- end to end


def test_help_lists_commands(workdir):
    r = sweep_cli([], workdir)
    assert r.returncode == 0
    assert "reproduce" in r.stdout and "best" in r.stdout


def test_best_prints_value_params_and_train_overrides(swept):
    client = mlflow_client(swept)
    best = best_flagged(client)
    r = sweep_cli(["best", "--experiment", EXPERIMENT], swept)
    assert r.returncode == 0, r.stderr
    assert best.info.run_id in r.stdout
    objective = best.data.tags["sweep.objective"]
    assert f"{objective} = {best.data.metrics[objective]!r}" in r.stdout
    assert f"optimizer.lr = {best.data.params['optimizer.lr']}" in r.stdout
    assert f"scheduler = {best.data.params['scheduler.name']}" in r.stdout

    line = next(ln.strip() for ln in r.stdout.splitlines() if "python train.py" in ln)
    overrides = shlex.split(line)[2:]
    assert not any(o.lstrip("+").startswith("hydra") for o in overrides)
    again = compose(overrides)
    logged = config_of(client, best.info.run_id)
    assert again.optimizer.lr == logged["optimizer"]["lr"]
    assert again.scheduler.name == logged["scheduler"]["name"]
    assert again.data.max_train_samples == logged["data"]["max_train_samples"]


def test_reproduce_best_after_sweep_outputs_are_gone(swept):
    shutil.rmtree(swept / "multirun", ignore_errors=True)
    shutil.rmtree(swept / ".sweep", ignore_errors=True)
    client = mlflow_client(swept)
    best = best_flagged(client)
    r = sweep_cli(["reproduce", "--best", "--experiment", EXPERIMENT], swept)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "OK: the reproduced metrics match" in r.stdout

    copies = [
        x for x in runs_of(client, EXPERIMENT) if x.data.tags.get("reproduces") == best.info.run_id
    ]
    assert len(copies) == 1
    copy = copies[0]
    assert "mlflow.parentRunId" not in copy.data.tags
    assert copy.info.run_name.startswith("reproduce ")
    assert copy.info.status == "FINISHED"
    for m in METRICS:
        assert copy.data.metrics[m] == best.data.metrics[m], m
    assert (
        config_of(client, copy.info.run_id)["optimizer"]
        == config_of(client, best.info.run_id)["optimizer"]
    )


def test_reproduce_single_run_by_id_warns_about_drift(workdir):
    r = run_train(TINY, workdir)
    assert r.returncode == 0, r.stdout[-3000:]
    client = mlflow_client(workdir)
    (orig,) = runs_of(client, "tiny-synthetic")
    run_id = orig.info.run_id
    client.set_tag(run_id, "sweep.version.transformers", "0.0.1")
    client.set_tag(run_id, "sweep.git_commit", "deadbeef")
    client.set_tag(run_id, "sweep.data_fingerprint", "abc")
    # and MLflow's own field: a train dataset input with another digest
    from mlflow.entities import Dataset, DatasetInput, InputTag

    tampered = Dataset("synthetic", "def0123", "code", "{}")
    client.log_inputs(run_id, [DatasetInput(tampered, [InputTag("mlflow.data.context", "train")])])

    from importlib import metadata

    from sweep.track.tracking import environment_tags

    current = environment_tags()

    r = sweep_cli(
        ["reproduce", run_id, "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"], workdir
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    err = r.stderr
    assert f"transformers 0.0.1 -> {metadata.version('transformers')}" in err
    if "sweep.git_commit" in current:
        assert f"git commit deadbeef -> {current['sweep.git_commit']}" in err
    assert f"data fingerprint changed (abc -> {orig.data.tags['sweep.data_fingerprint']})" in err
    from sweep.cli.reproduce import logged_digests

    train_digest = dict(logged_digests(orig))["train"]
    assert f"train data changed (MLflow dataset digest def0123 -> {train_digest})" in err
    assert "validation data changed" not in err  # its digest is the same

    copies = [x for x in runs_of(client, "tiny-synthetic") if x.info.run_id != run_id]
    assert len(copies) == 1
    assert copies[0].data.tags["reproduces"] == run_id
    assert "mlflow.parentRunId" not in copies[0].data.tags
    for m in METRICS:
        assert copies[0].data.metrics[m] == orig.data.metrics[m], m


# --------------------------------------------------------------------------- refusals and errors


def _logged_config(swept: Path) -> str:
    client = mlflow_client(swept)
    best = best_flagged(client)
    return (Path(best.info.artifact_uri) / "config.yaml").read_text()


def test_tampered_config_with_target_is_refused_and_runs_nothing(swept):
    client = mlflow_client(swept)
    tree = yaml.safe_load(_logged_config(swept))
    tree["model"]["_target_"] = "os.system"
    run_id = fake_run(client, "tampered", yaml.safe_dump(tree))
    before = len(runs_of(client, "tampered"))
    r = sweep_cli(["reproduce", run_id], swept)
    assert r.returncode == 2
    line = error_line(r)
    assert "model._target_" in line and "refused" in line
    assert len(runs_of(client, "tampered")) == before


def test_masked_credential_without_value_fails_naming_key_and_both_ways(swept):
    client = mlflow_client(swept)
    tree = yaml.safe_load(_logged_config(swept))
    tree["data"]["train_file"] = "s3://me:***@example.com/train.csv"
    run_id = fake_run(client, "masked", yaml.safe_dump(tree))
    env = {k: v for k, v in os.environ.items() if k != "TRAIN_FILE"}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    r = subprocess.run(
        [sys.executable, "-m", "sweep", "reproduce", run_id],
        cwd=swept,
        env={**env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    line = error_line(r)
    assert "data.train_file" in line
    assert "--set data.train_file=VALUE" in line and "TRAIN_FILE" in line
    assert len(runs_of(client, "masked")) == 1


def test_error_unknown_run(swept):
    r = sweep_cli(["reproduce", "0123456789abcdef0123456789abcdef"], swept)
    assert r.returncode == 2
    assert "no MLflow run '0123456789abcdef0123456789abcdef'" in error_line(r)


def test_error_run_without_config(swept):
    run_id = fake_run(mlflow_client(swept), "no-config", None)
    r = sweep_cli(["reproduce", run_id], swept)
    assert r.returncode == 2
    line = error_line(r)
    assert run_id in line and "config.yaml" in line


def test_error_unknown_experiment(swept):
    r = sweep_cli(["reproduce", "--best", "--experiment", "no-such-experiment"], swept)
    assert r.returncode == 2
    assert "no MLflow experiment 'no-such-experiment'" in error_line(r)


def test_error_experiment_without_finished_trial(swept):
    fake_run(mlflow_client(swept), "unfinished", "model: {}\n", finish=False)
    r = sweep_cli(["best", "--experiment", "unfinished"], swept)
    assert r.returncode == 2
    assert "'unfinished' has no finished trial" in error_line(r)


def test_error_unreachable_store_is_fast(workdir):
    t0 = time.monotonic()
    r = sweep_cli(
        ["reproduce", "abc", "--tracking-uri", "http://127.0.0.1:9"], workdir, timeout=120
    )
    seconds = time.monotonic() - t0
    assert r.returncode == 2
    line = error_line(r)
    assert "http://127.0.0.1:9" in line and "unreachable" in line
    assert not (workdir / "mlflow.db").exists()
    # judged against the same command failing on a local error at the same check (a cold start
    # is slow on a loaded machine): the check's timeout is 5 s; MLflow's own retries take minutes
    missing = f"sqlite:///{workdir / 'missing' / 'mlflow.db'}"
    t0 = time.monotonic()
    local = sweep_cli(["reproduce", "abc", "--tracking-uri", missing], workdir, timeout=120)
    baseline = time.monotonic() - t0
    assert local.returncode == 2 and "does not exist" in error_line(local)
    assert seconds - baseline < 20, f"{seconds:.1f} s; a local error {baseline:.1f} s"


def test_error_missing_sqlite_store_is_not_created(workdir):
    r = sweep_cli(["best", "--experiment", "x"], workdir, timeout=60)
    assert r.returncode == 2
    assert "mlflow.db" in error_line(r)
    assert not (workdir / "mlflow.db").exists()


def test_mismatch_exits_1_with_a_clear_message(swept, monkeypatch, capsys):
    """The comparison and exit code, in-process, with training replaced by a fake outcome."""
    from sweep.__main__ import main
    from sweep.train import runner

    client = mlflow_client(swept)
    best = best_flagged(client)
    seen = {}

    def fake_run_job(cfg, ctx, *, extra_tags=None, want_outcome=False, **kw):
        seen.update(cfg=cfg, ctx=ctx, tags=extra_tags)
        final = {m: best.data.metrics[m] for m in METRICS}
        final["eval_loss"] += 0.01
        return SimpleNamespace(run_id="fake", final=final, objective=0.0)

    monkeypatch.setattr(runner, "run_job", fake_run_job)
    monkeypatch.chdir(swept)
    assert main(["reproduce", best.info.run_id]) == 1
    err = capsys.readouterr().err
    line = error_line(SimpleNamespace(stderr=err, stdout=""))
    assert "eval_loss" in line and "--atol" in line
    assert seen["ctx"] is None and seen["tags"]["reproduces"] == best.info.run_id
    assert seen["cfg"].tracking.uri == f"sqlite:///{swept.resolve() / 'mlflow.db'}"
    assert seen["cfg"].tracking.run_name == f"reproduce {best.info.run_name}"
    assert main(["reproduce", best.info.run_id, "--atol", "0.1"]) == 0


def test_best_falls_back_to_best_finished_complete_trial(swept):
    from sweep.cli.reproduce import best_run

    client = mlflow_client(swept)
    ids = {}
    for name, loss, state in (("a", 0.4, "COMPLETE"), ("b", 0.3, "COMPLETE"), ("c", 0.1, "FAIL")):
        rid = fake_run(client, "fallback", None)
        client.log_metric(rid, "eval_loss", loss, step=2)
        client.set_tag(rid, "sweep.objective", "eval_loss")
        client.set_tag(rid, "optuna.state", state)
        ids[name] = rid
    b = best_run(client, "fallback", client.tracking_uri)
    assert b.run.info.run_id == ids["b"]
    assert (b.objective, b.direction, b.value) == ("eval_loss", "minimize", 0.3)


# --------------------------------------------------------------------------- pure functions

GOOD = {
    "model": {"name": "tiny", "source": "random"},
    "data": {"name": "synthetic"},
    "optimizer": {"name": "adamw", "lr": 1e-4},
    "scheduler": {"name": "linear"},
    "tracking": {"experiment": "x", "uri": "postgresql://me:***@db/mlflow"},
}


@pytest.mark.parametrize("key", ["_target_", "_partial_", "_args_", "_recursive_", "_convert_"])
def test_instantiation_keys_refused_anywhere(key):
    text = yaml.safe_dump({"model": {"name": "tiny", "x": [{"y": {key: "os.system"}}]}})
    with pytest.raises(ReproduceError, match=rf"model\.x\[0\]\.y\.{key}"):
        parse_config_text(text)


TREE = {
    "model": {"name": "tiny", "_target_": "x.Y"},
    "layers": [{"_partial_": True, "act": "${act}"}, ["${oc.env:HOME}", {"_args_": [1]}]],
    "auth": {"hf_token": "***", "ok": "no ${ here"},
    "tracking": {"uri": "postgresql://me:***@db/mlflow", "tags": ["***", "plain"]},
    "empty": {},
    "none": [],
}


def test_find_forbidden_walks_nested_dicts_and_lists():
    assert find_forbidden(TREE) == ["model._target_", "layers[0]._partial_", "layers[1][1]._args_"]
    assert find_forbidden([{"x": {"_convert_": 1}}], "top") == ["top[0].x._convert_"]
    assert find_forbidden({"_recursive_": {"_target_": 1}}) == [
        "_recursive_",
        "_recursive_._target_",
    ]
    assert find_forbidden({"a": "_target_", "b": ["_target_"]}) == []  # a value is not a key


def test_find_interpolations_names_each_string_leaf():
    assert _find_interpolations(TREE) == ["layers[0].act", "layers[1][0]", "auth.ok"]
    assert _find_interpolations({"a": [1, None, 2.5, True]}) == []


def test_masked_keys_names_masked_secrets_and_uri_passwords():
    assert masked_keys(TREE) == ["auth.hf_token", "tracking.uri", "tracking.tags[0]"]
    assert masked_keys({"a": [{"b": "***"}]}, "cfg") == ["cfg.a[0].b"]
    assert masked_keys({"a": "s3://me:pw@host/x", "b": "***x"}) == []


def test_unsafe_yaml_is_refused():
    with pytest.raises(ReproduceError, match="YAML"):
        parse_config_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ReproduceError, match="alias"):
        parse_config_text("a: &x [1, 2]\nb: *x\n")
    with pytest.raises(ReproduceError, match="interpolation"):
        parse_config_text("tracking:\n  experiment: ${oc.env:HOME}\n")
    with pytest.raises(ReproduceError, match="mapping"):
        parse_config_text("- 1\n- 2\n")


def test_schema_refuses_unknown_keys_and_wrong_types():
    with pytest.raises(ReproduceError, match="schema"):
        to_config({**GOOD, "model": {**GOOD["model"], "evil": 1}})
    with pytest.raises(ReproduceError, match="schema"):
        to_config({**GOOD, "optimizer": {"name": "adamw", "lr": "fast"}})
    with pytest.raises(ReproduceError, match="lacks required keys"):
        to_config({k: v for k, v in GOOD.items() if k != "optimizer"})


def test_fill_masked_secret_from_set_then_env_else_error():
    tree = {"a": {"b": {"hf_token": "***"}}, "c": 1}
    assert masked_keys(tree) == ["a.b.hf_token"]
    filled, notes = fill_masked(tree, {"a.b.hf_token": "cli"}, env={"HF_TOKEN": "env"})
    assert filled["a"]["b"]["hf_token"] == "cli" and "--set" in notes[0]
    assert tree["a"]["b"]["hf_token"] == "***"  # the input is not changed
    filled, notes = fill_masked(tree, {}, env={"HF_TOKEN": "env"})
    assert filled["a"]["b"]["hf_token"] == "env" and "$HF_TOKEN" in notes[0]
    with pytest.raises(ReproduceError) as e:
        fill_masked(tree, {}, env={})
    msg = str(e.value)
    assert "a.b.hf_token" in msg and "--set a.b.hf_token=VALUE" in msg and "HF_TOKEN" in msg
    assert "\n" not in msg


def test_fill_masked_uri_credential():
    tree = {"data": {"train_file": "s3://me:***@host/x.csv"}}
    filled, _ = fill_masked(tree, {"data.train_file": "p@ss"}, env={})
    assert filled["data"]["train_file"] == "s3://me:p%40ss@host/x.csv"
    filled, _ = fill_masked(tree, {}, env={"TRAIN_FILE": "s3://you:pw@other/y.csv"})
    assert filled["data"]["train_file"] == "s3://you:pw@other/y.csv"
    with pytest.raises(ReproduceError, match="not masked"):
        fill_masked(tree, {"optimizer.lr": "1"}, env={})


def test_prepare_config_replaces_tracking_uri_with_the_store():
    cfg, notes = prepare_config(yaml.safe_dump(GOOD), "sqlite:////tmp/x/mlflow.db", env={})
    assert cfg.tracking.uri == "sqlite:////tmp/x/mlflow.db"
    assert notes == []


def test_environment_drift_names_each_difference():
    logged = {
        "sweep.version.transformers": "5.23.0",
        "sweep.version.torch": "2.1",
        "sweep.python": "3.10.1",
        "sweep.git_commit": "aaa",
        "sweep.git_dirty": "false",
    }
    now = {
        "sweep.version.transformers": "5.24.1",
        "sweep.python": "3.11.7",
        "sweep.git_commit": "bbb",
        "sweep.git_dirty": "true",
    }
    lines = environment_drift(logged, now)
    assert "transformers 5.23.0 -> 5.24.1" in lines
    assert "torch 2.1 -> (not installed)" in lines
    assert "python 3.10.1 -> 3.11.7" in lines
    assert "git commit aaa -> bbb" in lines
    assert "git dirty false -> true" in lines
    assert environment_drift(now, now) == []


def test_compare_exact_and_tolerance():
    logged = {"eval_loss": 0.5, "eval_accuracy": 0.75, "eval_f1": float("nan")}
    _, bad = compare(logged, dict(logged), 0.0)
    assert bad == []
    _, bad = compare(logged, {**logged, "eval_loss": 0.5 + 1e-7}, 1e-6)
    assert bad == []
    rows, bad = compare(logged, {**logged, "eval_loss": 0.6}, 1e-6)
    assert bad == ["eval_loss"] and any("<-" in r for r in rows)


def test_artifacts_found_after_moving_the_store(tmp_path):
    from sweep.cli.reproduce import _local_artifact_dir

    new = tmp_path / "new"
    (new / "mlartifacts" / "exp" / "abc" / "artifacts").mkdir(parents=True)
    old_uri = str(tmp_path / "old" / "mlartifacts" / "exp" / "abc" / "artifacts")
    found = _local_artifact_dir(old_uri, f"sqlite:///{new / 'mlflow.db'}")
    assert found == new / "mlartifacts" / "exp" / "abc" / "artifacts"
    assert _local_artifact_dir("s3://bucket/x", f"sqlite:///{new / 'mlflow.db'}") is None


def test_best_overrides_drop_hydra_and_mask_secrets():
    from sweep.cli.reproduce import best_params, logged_overrides, train_command

    tags = {
        "sweep.overrides": "model=tiny optimizer.lr=3e-05 scheduler=cosine "
        "+hydra.job.env_set.X=1 +auth.hf_token=abc tracking.uri=postgresql://u:pw@h/db"
    }
    params = {"optimizer.lr": "3e-05", "scheduler.name": "cosine", "scheduler.power": "1.0"}
    run = SimpleNamespace(data=SimpleNamespace(tags=tags, params=params))
    overrides = logged_overrides(run)
    assert overrides == [
        "model=tiny",
        "optimizer.lr=3e-05",
        "scheduler=cosine",
        "+auth.hf_token=***",
        "tracking.uri=postgresql://u:***@h/db",
    ]
    keys = ["optimizer.lr", "scheduler", "scheduler.power"]
    assert best_params(run, keys, overrides) == {"optimizer.lr": "3e-05", "scheduler": "cosine"}
    assert best_params(run, keys, []) == {
        "optimizer.lr": "3e-05",
        "scheduler": "cosine",
        "scheduler.power": "1.0",
    }
    assert train_command(["a=1", "b=x y"]) == "python train.py a=1 'b=x y'"
