"""Config composition, validation and the reference presets.

.venv/bin/python -m pytest tests/test_config.py
"""

from __future__ import annotations

import re

import pytest
from conftest import TINY, compose, run_train
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import ConfigKeyError, ValidationError

from sweep.core.config import (
    MASK,
    ConfigError,
    check_sweeper,
    data_config,
    default_cache_dir,
    flatten,
    is_secret_key,
    mask_text,
    mask_tree,
    mask_uri,
    parse_n_workers,
    redact,
    secret_values,
    validate,
)

OPTIONS = {
    "model": ["tiny", "minilm", "bert_small"],
    "data": ["synthetic", "imdb", "files"],
    "optimizer": ["adam", "adamw"],
    "scheduler": ["constant", "constant_with_warmup", "linear", "cosine", "polynomial"],
    "experiment": ["imdb_bert_small", "earlybert_polynomial"],
    "tracking": ["default", "none"],
    "search": ["lr_schedule"],
}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in OPTIONS.items() for o in opts])
def test_every_option_composes_and_validates(group, option):
    extra = ["data.train_file=train.csv"] if option == "files" else []
    cfg = compose([f"{group}={option}", *extra])
    validate(cfg)
    if group not in ("experiment", "tracking", "search"):
        assert cfg[group].name == option


def test_defaults_are_the_offline_recipe():
    cfg = compose()
    assert (cfg.model.name, cfg.model.source) == ("minilm", "package")
    assert cfg.data.name == "synthetic"
    assert cfg.trainer.objective == "eval_f1"
    assert cfg.tracking.experiment == "minilm-synthetic"


def test_imdb_bert_small_preset_is_the_reference_recipe():
    cfg = compose(["experiment=imdb_bert_small"])
    assert cfg.model.pretrained == "google/bert_uncased_L-8_H-512_A-8"
    assert cfg.data.hub_id == "stanfordnlp/imdb"
    # validation is held out of train; IMDB's test split is the test split (since 2026-12)
    assert cfg.data.validation_split is None and cfg.data.validation_fraction == 0.1
    assert cfg.data.test_split == "test"
    o, s, t = cfg.optimizer, cfg.scheduler, cfg.trainer
    assert (o.name, o.lr, list(o.betas), o.eps, o.weight_decay) == (
        "adam",
        3e-5,
        [0.9, 0.999],
        1e-8,
        0.0,
    )
    assert (s.name, s.warmup_ratio) == ("constant", 0.0)
    assert (t.train_batch_size, t.eval_batch_size, t.seed, t.epochs, t.eval_every) == (
        128,
        128,
        42,
        200,
        500,
    )
    assert t.precision == "fp32"  # as the recipe ran (Trainer's default), not `auto`
    assert t.objective in ("eval_f1", "eval_accuracy", "eval_loss")


def test_earlybert_polynomial_preset_is_the_reference_recipe():
    cfg = compose(["experiment=earlybert_polynomial"])
    o, s, t = cfg.optimizer, cfg.scheduler, cfg.trainer
    assert (o.name, o.lr, list(o.betas), o.eps, o.weight_decay) == (
        "adamw",
        2e-5,
        [0.9, 0.999],
        1e-8,
        0.01,
    )
    assert (s.name, s.power, s.end_lr, s.decay_steps, s.warmup_ratio) == (
        "polynomial",
        1.0,
        0.0,
        669,
        0.0,
    )
    assert (t.precision, t.epochs) == ("fp32", 2)
    # model and data stay the defaults (the source names neither)
    assert (cfg.model.name, cfg.data.name) == ("minilm", "synthetic")


@pytest.mark.parametrize(
    "override,exc,words",
    [
        (["optimizer.lrr=1e-3"], ConfigCompositionException, "optimizer.lrr"),
        (["optimizer.lr=fast"], ConfigCompositionException, "optimizer.lr"),
        (["scheduler=triangle"], ConfigCompositionException, "scheduler/triangle"),
        (["trainer.eval_every=often"], ConfigCompositionException, "trainer.eval_every"),
    ],
)
def test_composition_errors_name_the_key(override, exc, words):
    with pytest.raises((exc, HydraException, ConfigKeyError, ValidationError)) as info:
        compose(override)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=0"], "optimizer.lr must be > 0, got 0.0"),
        (["optimizer.lr=-1e-4"], "optimizer.lr must be > 0, got -0.0001"),
        (["scheduler.warmup_ratio=1.0"], "scheduler.warmup_ratio must be in [0, 1), got 1.0"),
        (["scheduler.warmup_ratio=-0.1"], "scheduler.warmup_ratio must be in [0, 1), got -0.1"),
        (
            ["scheduler=polynomial", "optimizer.lr=1e-5", "scheduler.end_lr=1e-4"],
            "scheduler.end_lr (0.0001) must be below the start LR optimizer.lr (1e-05)",
        ),
        (
            ["trainer.precision=fp16"],
            "trainer.precision=fp16 needs a CUDA GPU and none is available",
        ),
        (["trainer.precision=fp8"], "trainer.precision must be one of"),
        (["trainer.batch_order=sorted"], "trainer.batch_order must be one of random, length"),
        (["optimizer.betas=[0.9,1.5]"], "optimizer.betas must be two numbers in [0, 1)"),
        (["data.label_noise=0.7"], "data.label_noise must be in [0, 0.5), got 0.7"),
        (["trainer.objective=eval_recall"], "trainer.objective must be one of"),
        (["data=files"], "data.train_file"),
        (["trainer.eval_subset=-1"], "trainer.eval_subset must be >= 0, got -1"),
        (
            ["trainer.eval_subset=64", "trainer.objective_at=best"],
            "trainer.eval_subset needs trainer.objective_at=final",
        ),
    ],
)
def test_validation_errors(overrides, message):
    pytest.importorskip("torch")
    import torch

    if "fp16" in message and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    try:
        cfg = compose(overrides)
    except Exception as e:  # data=files without train_file is MISSING at composition
        assert message in str(e)
        return
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# (overrides, key, value just past the bound, value at the bound): refused, then accepted
BOUNDS = [
    ([], "data.train_size", "1", "2"),
    ([], "data.eval_size", "1", "2"),  # eval_size=2 trains: 1 negative + 1 positive review
    ([], "data.max_length", "7", "8"),
    ([], "data.label_noise", "-0.01", "0.0"),
    ([], "data.label_noise", "0.5", "0.49"),
    ([], "data.max_train_samples", "0", "1"),
    ([], "data.max_eval_samples", "0", "1"),
    (["data=files", "data.train_file=t.csv"], "data.validation_fraction", "0.0", "0.01"),
    (["data=files", "data.train_file=t.csv"], "data.validation_fraction", "1.0", "0.99"),
]


@pytest.mark.parametrize("overrides,key,bad,ok", BOUNDS)
def test_data_bounds_refuse_past_and_accept_at_the_bound(overrides, key, bad, ok):
    with pytest.raises(ConfigError) as info:
        validate(compose(["model=tiny", *overrides, f"{key}={bad}"]), check_device=False)
    message = str(info.value)
    assert message.startswith(f"{key} must be ") and "\n" not in message
    validate(compose(["model=tiny", *overrides, f"{key}={ok}"]), check_device=False)


def test_data_config_holds_the_same_rules_for_the_data_layer():
    """`data_config` (what sweep/train/data.py reads) refuses what `validate` refuses, with the
    same line, and fills in the schema's defaults for a partial config."""
    cfg = compose(["model=tiny", "data.eval_size=1"])
    with pytest.raises(ConfigError) as by_validate:
        validate(cfg, check_device=False)
    with pytest.raises(ConfigError) as by_data:
        data_config(cfg.data)
    assert str(by_data.value) == str(by_validate.value) == "data.eval_size must be >= 2, got 1"
    d = data_config({"name": "synthetic"})
    assert (d.train_size, d.eval_size, d.label_noise, d.max_length) == (2000, 500, 0.02, 128)
    imdb = compose(["data=imdb", "data.hub_id=null"])
    with pytest.raises(ConfigError, match="^data.hub_id .*is required with data=imdb$"):
        validate(imdb, check_device=False)


def test_default_cache_dir_is_the_one_tokenize_uses(monkeypatch, tmp_path):
    from sweep.train import tokens

    assert tokens.default_cache_dir is default_cache_dir
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == str(tmp_path)
    monkeypatch.delenv("SWEEP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == str(tmp_path / ".cache" / "sweep-orchestrator" / "tokenized")


def test_bad_value_fails_in_one_line_before_any_work(workdir):
    """The whole command: exit 2, one line naming the key, no MLflow store, no data tokenized."""
    proc = run_train([*TINY, "optimizer.lr=-0.001"], workdir, timeout=60)
    assert proc.returncode == 2, proc.stdout
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert errors == ["error: optimizer.lr must be > 0, got -0.001"]
    assert "Tokeniz" not in proc.stdout
    assert not (workdir / "mlflow.db").exists()


def test_decay_longer_than_the_run_fails_after_data_before_model(workdir):
    proc = run_train(
        [*TINY, "scheduler=polynomial", "scheduler.decay_steps=669", "trainer.epochs=1"], workdir
    )
    assert proc.returncode == 2, proc.stdout
    assert "error: scheduler.decay_steps (669) is longer than the run (10 steps)" in proc.stdout
    assert "Loading weights" not in proc.stdout


def test_typo_fails_fast_naming_the_key(workdir):
    proc = run_train([*TINY, "trainer.epoch=3"], workdir, timeout=60)
    assert proc.returncode != 0
    assert "trainer.epoch" in proc.stdout
    assert not (workdir / "mlflow.db").exists()


def test_secret_keys_and_uris_are_masked():
    assert is_secret_key("hf_token") and is_secret_key("db.password") and is_secret_key("api_key")
    assert is_secret_key("tracking.secret") and is_secret_key("openai-api-key")
    assert not is_secret_key("tokenizer") and not is_secret_key("max_tokens")
    assert not is_secret_key("data.text_column")
    assert mask_uri("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    tree = mask_tree({"a": {"hf_token": "hf_abc", "uri": "http://u:p@h/"}, "tokenizer": "bert"})
    assert tree == {"a": {"hf_token": "***", "uri": "http://u:***@h/"}, "tokenizer": "bert"}


def test_secret_values_are_found_in_configs_and_overrides_and_masked_in_log_lines(caplog):
    tree = {
        "model": {"hf_token": "hf_Abc123", "tokenizer": "bert-base-uncased"},
        "data": {"max_tokens": 1000},
        "hydra": {
            "overrides": {
                "task": [
                    "+model.hf_token=hf_Abc123",
                    "++tracking.api_key='k-Quoted9'",
                    "hydra.sweeper.storage=postgresql://bob:Pw-xyz9@db:5432/optuna",
                    "data.max_length=128",
                ]
            }
        },
    }
    secrets = secret_values(tree)
    assert secrets == {"hf_Abc123", "k-Quoted9", "Pw-xyz9"}
    line = "#0 : +model.hf_token=hf_Abc123 storage=postgresql://bob:Pw-xyz9@db/optuna"
    assert (
        mask_text(line, secrets)
        == "#0 : +model.hf_token=*** storage=postgresql://bob:***@db/optuna"
    )

    import logging

    redact(secrets)
    logging.getLogger("hydra.test").warning("launching %s", "+model.hf_token=hf_Abc123")
    assert caplog.records[-1].getMessage() == "launching +model.hf_token=***"
    logging.getLogger("hydra.test").warning("nothing secret: %d tokens", 12)
    assert caplog.records[-1].getMessage() == "nothing secret: 12 tokens"


def test_missing_data_file_fails_in_one_line(workdir):
    proc = run_train([*TINY, "data=files", "data.train_file=nope.csv"], workdir, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nope.csv" in errors[0] and "not found" in errors[0]


def test_hub_model_offline_fails_in_one_line(workdir):
    proc = run_train(["model=bert_small", "data.train_size=64", "data.eval_size=16"], workdir)
    assert proc.returncode == 2, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stdout[-2000:]
    assert "google/bert_uncased_L-8_H-512_A-8" in errors[0] and "hub" in errors[0]


def test_tree_walkers_on_lists_and_empty_trees():
    # a list item takes its list's key: every item of a secret list is masked
    tree = {"hf_token": ["abcd1234", None], "uris": ["http://u:pw12@h/", 3], "empty": {}, "l": []}
    assert mask_tree(tree) == {
        "hf_token": [MASK, None],
        "uris": ["http://u:***@h/", 3],
        "empty": {},
        "l": [],
    }
    assert mask_tree([{"password": "x"}, "y"]) == [{"password": MASK}, "y"]
    assert mask_tree({}) == {} and mask_tree("plain") == "plain"
    assert secret_values(tree) == {"abcd1234", "pw12"}
    assert secret_values(("api_key=k-12345", "lr=1e-3")) == {"k-12345"}  # overrides, top level
    assert secret_values({"token": ["abc", True]}) == set()  # too short; bools are no secrets
    assert secret_values({"a": {"b": "s3cret-value"}}, "password") == {"s3cret-value"}
    assert secret_values({}) == set() and secret_values([]) == set()
    # flatten keeps lists as values; an empty dict leaves no key
    assert flatten({"a": {"b": 1, "c": [1, {"d": 2}]}, "e": {}, "f": None}) == {
        "a.b": 1,
        "a.c": [1, {"d": 2}],
        "f": None,
    }
    assert flatten({}) == {} and flatten({"x": 1}, "top") == {"top.x": 1}
    assert flatten([1, 2], "k") == {"k": [1, 2]}


@pytest.mark.parametrize(
    "key,bad,ok,message",
    [
        ("n_trials", 0, 1, "hydra.sweeper.n_trials must be >= 1, got 0"),
        ("n_jobs", 0, 2, "hydra.sweeper.n_jobs must be >= 1, got 0"),
        ("n_startup_trials", -1, 0, "hydra.sweeper.n_startup_trials must be >= 0"),
        ("pruner_startup_trials", -1, 0, "hydra.sweeper.pruner_startup_trials must be >= 0"),
        ("pruner_warmup_steps", -2, 0, "hydra.sweeper.pruner_warmup_steps must be >= 0"),
        ("max_retries", -1, 0, "hydra.sweeper.max_retries must be >= 0"),
        ("heartbeat_interval", 0.0, 0.5, "hydra.sweeper.heartbeat_interval must be > 0"),
        ("grace_period", -5.0, 1.0, "hydra.sweeper.grace_period must be > 0"),
        ("timeout", 0.0, None, "hydra.sweeper.timeout must be > 0 seconds (or null)"),
        ("max_failure_rate", 1.5, 1.0, "hydra.sweeper.max_failure_rate must be in [0, 1]"),
        ("prune_on", "f1", "eval_loss", "hydra.sweeper.prune_on must be one of eval_f1"),
        ("n_workers", "0", "auto", "hydra.sweeper.n_workers must be a positive integer or auto"),
        ("n_workers", "2x", 3, "hydra.sweeper.n_workers must be a positive integer or auto"),
    ],
)
def test_sweeper_options_are_checked_in_the_config_layer(key, bad, ok, message):
    # the composed hydra.sweeper node, as the sweeper receives it
    sweeper = compose(TINY, with_hydra=True).hydra.sweeper
    check_sweeper(sweeper, "maximize")  # the defaults pass
    sweeper[key] = ok
    check_sweeper(sweeper, "minimize")  # and so does the value at the bound
    sweeper[key] = bad
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_sweeper(sweeper, "maximize")


def test_sweeper_direction_and_workers_parse():
    sweeper = compose(TINY, with_hydra=True).hydra.sweeper
    with pytest.raises(ConfigError, match="direction must be minimize or maximize, got 'max'"):
        check_sweeper(sweeper, "max")
    assert parse_n_workers("auto") is None and parse_n_workers(None) is None
    assert parse_n_workers("3") == 3 and parse_n_workers(2) == 2
