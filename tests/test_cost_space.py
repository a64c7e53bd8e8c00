"""Searching over what changes a model's cost: the model itself (`model=choice(...)`), the
sequence length, the batch size and the layers frozen (`model.freeze_layers`), with the existing
grammar and conditions; each trial logs the values it was given and what they cost.

.venv/bin/python -m pytest tests/test_cost_space.py -m "not slow"    # in-process checks only
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import ROOT, TINY, compose, mlflow_client, run_train, runs_of, sweep_study
from optuna.trial import TrialState
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from sweep.core import model_files
from sweep.core.config import ConfigError, validate
from sweep.train import optim
from sweep.train.model import ModelError, build_model, freeze
from sweep.train.perf import trainable_params

# a second offline model option for the sweeps: the tiny BERT with 3 layers instead of 2, as a
# config group file in a config directory of the test's own (hydra.searchpath)
TINY3 = {"name": "tiny3", "num_layers": 3}
# trials of 4 steps on 64 generated reviews, evaluated at steps 2 and 4
SHORT = [
    "data.train_size=64",
    "data.eval_size=32",
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.logging_every=2",
    "trainer.eval_batch_size=16",
    "hydra.sweeper.n_workers=1",
    "hydra.sweeper.confirm.top_k=0",
]


def tiny_model(n: int, name: str = "tiny", layers: int = 2):
    over = ["model=tiny", f"model.name={name}", f"model.num_layers={layers}"]
    return build_model(compose([*over, f"model.freeze_layers={n}"]).model, 2, seed=0)


def params_of(n: int, name: str = "tiny", layers: int = 2) -> int:
    return trainable_params(tiny_model(n, name, layers))


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- freezing


def test_freeze_layers_freezes_the_embeddings_and_the_bottom_layers():
    full = tiny_model(0)
    assert trainable_params(full) == numel(full)  # the default: nothing frozen
    embeddings, layers = numel(full.bert.embeddings), [numel(x) for x in full.bert.encoder.layer]
    assert params_of(1) == numel(full) - embeddings - layers[0]
    assert params_of(2) == numel(full) - embeddings - layers[0] - layers[1]
    # what stays trainable with every layer frozen: the pooler and the classification head
    trained = {n for n, p in tiny_model(2).named_parameters() if p.requires_grad}
    assert trained == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"} | {
        "classifier.weight",
        "classifier.bias",
    }
    one = tiny_model(1)
    assert all(p.requires_grad for p in one.bert.encoder.layer[1].parameters())
    assert not any(p.requires_grad for p in one.bert.encoder.layer[0].parameters())
    with pytest.raises(ModelError, match=r"freeze_layers=3 is more than the 2 transformer layers"):
        tiny_model(3)


def test_frozen_layers_stay_put_while_the_layers_above_learn():
    model = tiny_model(1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = optim.build_optimizer(model, compose(["model=tiny", "optimizer.lr=1e-2"]).optimizer)
    ids = torch.randint(1000, 2000, (4, 12))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1] * 2))
    out.loss.backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(".layer.1." in n or "pooler" in n or "classifier" in n for n in moved)
    assert any(".layer.1." in n for n in moved)
    # the optimizer holds only what it trains
    held = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert held == trainable_params(model)


def test_a_pretrained_model_is_frozen_in_its_copy_only():
    cfg = compose(["model=minilm"]).model
    cfg.freeze_layers = 6
    frozen = build_model(cfg, 2, seed=0)
    head = numel(frozen.classifier) + numel(frozen.bert.pooler)
    assert trainable_params(frozen) == head
    cfg.freeze_layers = 0  # the next run's copy of the cached weights trains everything
    again = build_model(cfg, 2, seed=0)
    assert trainable_params(again) == numel(again) > 20_000_000


def test_layers_are_found_in_other_encoders_and_refused_in_one_line_where_there_are_none():
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=64, vocab_size=100)
    )
    freeze(distil, 2)  # DistilBERT keeps its layers at distilbert.transformer.layer
    trained = {n for n, p in distil.named_parameters() if p.requires_grad}
    assert trained and not any(
        "embeddings" in n or ".layer.0." in n or ".layer.1." in n for n in trained
    )
    assert any(".layer.2." in n for n in trained)
    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, bos_token_id=0, eos_token_id=0)
    )
    with pytest.raises(ModelError) as err:
        freeze(gpt2, 1)
    message = str(err.value)
    assert "\n" not in message and "GPT2ForSequenceClassification" in message
    assert message.startswith("model.freeze_layers: cannot find the transformer layers")
    assert all(p.requires_grad for p in gpt2.parameters())  # nothing half-frozen
    freeze(gpt2, 0)  # nothing to freeze: any architecture


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=tiny", "model.freeze_layers=-1"], "model.freeze_layers must be >= 0"),
        (["model=tiny", "model.freeze_layers=3"], "at most the 2 layers of model 'tiny', got 3"),
        (["model=tiny", "model.num_layers=4", "model.freeze_layers=5"], "at most the 4 layers"),
        # read from the packaged MiniLM's config.json, nothing loaded
        (["model=minilm", "model.freeze_layers=7"], "at most the 6 layers of model 'minilm'"),
    ],
)
def test_bad_freeze_layers_are_refused_before_anything_loads(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate(compose(overrides))
    assert "\n" not in str(err.value)


def test_the_layer_count_comes_from_the_local_model_config(tmp_path):
    validate(compose(["model=minilm", "model.freeze_layers=6"]))  # all six: fine
    validate(compose(["model=tiny", "model.freeze_layers=2"]))
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "num_hidden_layers": 4})
    )
    local = compose(["model=bert_small", f"model.pretrained={tmp_path}"]).model
    assert model_files.layer_count(local) == 4
    with pytest.raises(ConfigError, match="at most the 4 layers of model 'bert_small', got 5"):
        validate(
            compose(["model=bert_small", f"model.pretrained={tmp_path}", "model.freeze_layers=5"])
        )
    # a hub model not on this machine: checked when it is loaded (ModelError, before training)
    hub = compose(["model=bert_small", "model.pretrained=no-such-org/no-such-model"]).model
    assert model_files.layer_count(hub) is None
    validate(
        compose(
            [
                "model=bert_small",
                "model.pretrained=no-such-org/no-such-model",
                "model.freeze_layers=3",
            ]
        )
    )


# ----------------------------------------------------------------------------- real sweeps


@pytest.fixture
def tiny3(workdir) -> str:
    """The override that adds `model=tiny3` beside the repository's model options."""
    group = workdir / "extra_conf" / "model"
    group.mkdir(parents=True)
    text = (ROOT / "conf" / "model" / "tiny.yaml").read_text()
    for key, value in TINY3.items():
        text, n = re.subn(rf"(?m)^{key}: .*$", f"{key}: {value}", text)
        assert n == 1, key
    (group / "tiny3.yaml").write_text(text)
    return f"hydra.searchpath=[file://{workdir / 'extra_conf'}]"


def trial_runs(workdir, experiment: str):
    """(trial, its MLflow run) for every trial of the sweep's study."""
    study = sweep_study(workdir, experiment)
    by_id = {r.info.run_id: r for r in runs_of(mlflow_client(workdir), experiment)}
    return [(t, by_id[t.user_attrs["mlflow_run_id"]]) for t in study.get_trials(deepcopy=False)]


@pytest.mark.slow
def test_a_grid_over_models_and_frozen_layers_with_a_condition(workdir, tiny3):
    # frozen layers searched only for tiny3; the experiment follows from the base config
    # (model minilm: minilm-synthetic), never from each trial's model
    proc = run_train(
        [
            "-m",
            "~search",
            tiny3,
            "model=choice(tiny,tiny3)",
            "model.freeze_layers=range(0,4)",
            "+hydra.sweeper.conditions={model.freeze_layers:{model:[tiny3]}}",
            "hydra.sweeper.sampler=grid",
            "hydra.sweeper.pruner=none",
            "data.max_length=32",
            *SHORT,
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    pairs = trial_runs(workdir, "minilm-synthetic")
    points = sorted((t.params["model"], t.params.get("model.freeze_layers", -1)) for t, _ in pairs)
    assert points == [("tiny", -1), ("tiny3", 0), ("tiny3", 1), ("tiny3", 2), ("tiny3", 3)]
    assert all(t.state == TrialState.COMPLETE for t, _ in pairs)
    counts = {}
    for t, run in pairs:
        p, m = run.data.params, run.data.metrics
        frozen = t.params.get("model.freeze_layers", 0)  # tiny: the condition left it unset
        assert p["model.name"] == t.params["model"] and p["model.freeze_layers"] == str(frozen)
        layers = 3 if t.params["model"] == "tiny3" else 2
        assert p["model.num_layers"] == str(layers)
        assert m["perf.params"] == params_of(frozen, t.params["model"], layers), t.params
        counts[(t.params["model"], frozen)] = m["perf.params"]
    # each layer frozen drops the trainable parameters, the first also the embeddings
    assert counts[("tiny3", 0)] > 50 * counts[("tiny3", 1)]  # the embeddings: most of it
    assert counts[("tiny3", 1)] > counts[("tiny3", 2)] > counts[("tiny3", 3)] > 0
    assert counts[("tiny", 0)] < counts[("tiny3", 0)]  # one layer fewer
    # every trial is a child of the one parent run, in the parent's experiment
    client = mlflow_client(workdir)
    runs = runs_of(client, "minilm-synthetic")
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role")]
    assert {r.data.tags.get("mlflow.parentRunId") for _, r in pairs} == {parent.info.run_id}
    assert {e.name for e in client.search_experiments()} == {"Default", "minilm-synthetic"}


@pytest.mark.slow
def test_model_length_batch_and_frozen_layers_searched_beside_the_default_space(workdir, tiny3):
    # the default search (learning rate, schedule, conditional warm-up and power) plus the four
    # cost parameters, with the default sampler
    proc = run_train(
        [
            "-m",
            *[o for o in TINY if not o.startswith("model=")],
            tiny3,
            "model=choice(tiny,tiny3)",
            "data.max_length=choice(32,64)",
            "trainer.train_batch_size=choice(8,16)",
            "model.freeze_layers=range(0,3)",
            "tracking.experiment=cost-space",
            "hydra.sweeper.n_trials=6",
            *SHORT,
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    pairs = trial_runs(workdir, "cost-space")
    assert len(pairs) == 6 and all(t.state == TrialState.COMPLETE for t, _ in pairs)
    by_freeze: dict[tuple[str, int], set[float]] = {}
    for t, run in pairs:
        p, m, given = run.data.params, run.data.metrics, t.params
        layers = 3 if given["model"] == "tiny3" else 2
        assert p["model.name"] == given["model"]
        for key in ("data.max_length", "trainer.train_batch_size", "model.freeze_layers"):
            assert p[key] == str(given[key]), (key, given)
        assert float(p["optimizer.lr"]) == pytest.approx(given["optimizer.lr"])
        assert p["scheduler.name"] == given["scheduler"]
        # the default space's conditions still hold with a config group of models searched
        assert ("scheduler.power" in given) == (given["scheduler"] == "polynomial")
        assert ("scheduler.warmup_ratio" in given) == (given["scheduler"] != "constant")
        # what the values did to the run
        n = given["model.freeze_layers"]
        assert m["perf.params"] == params_of(n, given["model"], layers), given
        assert (
            m["perf.steps"] == 4
            and m["perf.train_samples"] == 4 * given["trainer.train_batch_size"]
        )
        padded = m["perf.batch_tokens"] / m["perf.train_samples"]  # tokens per example
        # the generated reviews are longer than 32 tokens: at 32 every one is cut to 32
        assert padded == 32 if given["data.max_length"] == 32 else 32 < padded <= 64
        by_freeze.setdefault((given["model"], n), set()).add(m["perf.params"])
    # the seeded draws cover both models and several frozen-layer counts
    assert {model for model, _ in by_freeze} == {"tiny", "tiny3"}
    assert all(len(v) == 1 for v in by_freeze.values())  # one count per (model, layers frozen)
    for model in ("tiny", "tiny3"):
        # more layers frozen, fewer parameters trained: a different count for each
        counts = [c for (m, _), (c,) in sorted(by_freeze.items()) if m == model]
        assert counts == sorted(set(counts), reverse=True), (model, by_freeze)
    assert max(sum(m == model for m, _ in by_freeze) for model in ("tiny", "tiny3")) > 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.freeze_layers=3"], "error: model.freeze_layers must be at most the 2 layers"),
        (["model.freeze_layers=-1"], "error: model.freeze_layers must be >= 0"),
        (
            ["-m", "model.freeze_layers=range(0,4)", "hydra.sweeper.n_trials=2"],
            "error: search space model.freeze_layers=3: model.freeze_layers must be at most the 2",
        ),
    ],
)
def test_a_bad_freeze_layers_is_one_error_line_before_training(workdir, args, expected):
    flags = [a for a in args if a.startswith("-")]  # -m goes first
    rest = [a for a in args if a not in flags]
    proc = run_train([*flags, *TINY, *rest], workdir, timeout=180)
    assert proc.returncode == 2, proc.stdout[-3000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout and "step 1" not in proc.stdout
    assert not (workdir / "mlflow.db").exists() and not (workdir / ".sweep").exists()
