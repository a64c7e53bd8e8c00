"""What a trial costs: `perf.train_seconds`, `perf.params`, `perf.latency_ms` and
`perf.peak_memory_mb` on every run (sweep/train/perf.py `Costs`), each a valid objective that a
sweep minimises; its value in the study is the metric the run logged.

.venv/bin/python -m pytest tests/test_cost_metrics.py            # -m "not slow": in-process only
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from conftest import TINY, TRAIN, compose, mlflow_client, run_train, runs_of, sweep_study
from optuna.trial import TrialState
from transformers import TrainerCallback

from sweep.core import metrics
from sweep.core.config import ConfigError, SweeperConfig, check_sweeper, validate
from sweep.train.loop import run_training
from sweep.train.model import build_model
from sweep.train.perf import LATENCY_BATCHES, latency_rows, trainable_params

COSTS = ("perf.train_seconds", "perf.params", "perf.latency_ms", "perf.peak_memory_mb")
# a tiny in-process run: 10 steps of 16, evaluated at steps 5 and 10 on 64 examples
RUN = [
    "model=tiny",
    "data.train_size=160",
    "data.eval_size=64",
    "data.max_length=48",
    "trainer.train_batch_size=16",
    "trainer.eval_every=5",
]


# ----------------------------------------------------------------------------- objectives


@pytest.mark.parametrize("cost", COSTS)
def test_every_cost_is_an_objective_that_is_minimised(cost):
    assert cost in metrics.COSTS and cost in metrics.OBJECTIVES
    validate(compose(["model=tiny", f"trainer.objective={cost}"]))  # no ConfigError
    # what the sweeper infers when hydra.sweeper.direction is not given
    assert metrics.direction(cost) == "minimize"
    assert metrics.pick(metrics.direction(cost))([3.0, 1.0, 2.0]) == 1.0


def test_an_unknown_objective_names_the_costs_too():
    cfg = compose(["model=tiny", "trainer.objective=perf.latency"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("trainer.objective must be one of eval_f1, eval_accuracy, eval_loss")
    assert all(c in message for c in COSTS) and message.endswith("got 'perf.latency'")


def test_a_cost_cannot_be_pruned_on():
    # the pruner sees evaluations; a cost is measured once, after training
    with pytest.raises(ConfigError, match="prune_on must be one of eval_f1, eval_accuracy, "):
        check_sweeper(SweeperConfig(prune_on="perf.latency_ms"), "minimize")
    check_sweeper(SweeperConfig(prune_on="eval_f1"), "minimize")  # an evaluation metric: fine


# ----------------------------------------------------------------------------- the rules


def test_latency_rows_are_fixed_full_and_nested():
    rows = latency_rows(1000, 16, 6)
    assert len(rows) == 96 and len(set(rows)) == 96 and all(0 <= r < 1000 for r in rows)
    assert rows == latency_rows(1000, 16, 6)  # the same in every trial and process
    assert latency_rows(1000, 32, 6)[:96] == rows  # a bigger batch takes more of the same order
    assert rows != sorted(rows)  # drawn across the set, not its shortest examples (sorted)
    small = latency_rows(10, 16, 6)  # a set smaller than the batches: gone through again
    assert len(small) == 96 and set(small) == set(range(10))
    assert all(small.count(r) in (9, 10) for r in range(10))


def test_frozen_parameters_are_not_counted():
    model = build_model(compose(["model=tiny"]).model, 2, seed=0)
    every = sum(p.numel() for p in model.parameters())
    assert trainable_params(model) == every
    embeddings = model.bert.embeddings
    for p in embeddings.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in embeddings.parameters())
    assert frozen > 0.9 * every  # the tiny model is mostly its 30522-word embedding table
    assert trainable_params(model) == every - frozen


# ----------------------------------------------------------------------------- a real run


@pytest.mark.slow
def test_a_run_logs_its_four_costs_and_returns_the_one_it_optimises(workdir):
    from sweep.train.runner import run_job

    uri = f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"
    cfg = compose([*RUN, "trainer.eval_batch_size=8", "trainer.objective=perf.params", uri])
    outcome = run_job(cfg, want_outcome=True)
    m = mlflow_client(workdir).get_run(outcome.run_id).data.metrics
    assert all(c in m for c in COSTS), sorted(m)
    # every parameter of the model the run built is trained (nothing frozen)
    model = build_model(cfg.model, 2, seed=cfg.trainer.seed)
    assert m["perf.params"] == trainable_params(model) == sum(p.numel() for p in model.parameters())
    # the objective the sweeper gets is the logged metric, and the run's tag says so
    assert outcome.state == "COMPLETE" and outcome.objective == m["perf.params"]
    tags = mlflow_client(workdir).get_run(outcome.run_id).data.tags
    assert float(tags["sweep.objective.perf.params"]) == m["perf.params"]
    # training's wall time holds its steps and evaluations, and is far from a whole minute
    assert m["perf.step_seconds"] + m["perf.eval_seconds"] <= m["perf.train_seconds"] < 60
    assert 0 < m["perf.latency_ms"] < 1000
    assert m["perf.latency_examples"] == LATENCY_BATCHES * 8
    assert m["perf.peak_memory_mb"] > 100  # torch and transformers alone hold ~500 MB


@pytest.mark.slow
def test_a_diverged_run_with_a_cost_objective_is_seen_and_still_logs_its_costs(workdir):
    from sweep.train.runner import run_job

    uri = f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"
    blow_up = ["optimizer.lr=1e6", "trainer.max_grad_norm=0", "scheduler=constant"]
    cfg = compose([*RUN, *blow_up, "trainer.objective=perf.latency_ms", uri])
    outcome = run_job(cfg, want_outcome=True)
    # divergence is still seen (on the evaluation loss: a cost is not reported while training):
    # PRUNED, as every diverged trial, with no value, whatever its latency
    assert (outcome.status, outcome.state) == ("diverged", "PRUNED")
    assert math.isnan(outcome.objective)
    run = mlflow_client(workdir).get_run(outcome.run_id)
    assert run.data.tags["sweep.status"] == "diverged"
    assert run.data.metrics["perf.latency_ms"] > 0 and "perf.params" in run.data.metrics


class Forwards(TrainerCallback):
    """Every eval-mode forward of the model: (after training ended, batch rows, padded length,
    longest example, the dtype its classifier computed in, torch threads)."""

    def __init__(self):
        self.seen: list[tuple[bool, int, int, int, torch.dtype, int]] = []
        self.ended = False
        self._dtype = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # the classifier's own output: the model's (accelerate's autocast wrapper) is cast to fp32
        model.classifier.register_forward_hook(self._classifier)
        model.register_forward_hook(self._record, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = True

    def _classifier(self, module, args, output):
        self._dtype = output.dtype

    def _record(self, module, args, kwargs, output):
        if not module.training:
            mask = kwargs["attention_mask"]  # (B, T)
            longest = int(mask.sum(dim=1).max())
            row = (self.ended, *mask.shape, longest, self._dtype, torch.get_num_threads())
            self.seen.append(row)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_latency_is_fixed_batches_at_the_eval_batch_size_as_evaluated(precision):
    threads = torch.get_num_threads()
    watch = Forwards()
    over = [*RUN, "tracking=none", "trainer.eval_batch_size=12", "trainer.threads=1"]
    over.append("data.max_length=128")  # reviews of many lengths, none cut to one length
    over.append(f"trainer.precision={precision}")
    try:
        result = run_training(compose(over), callbacks=[watch])
    finally:
        torch.set_num_threads(threads)
    evals = [s for s in watch.seen if not s[0]]
    timed = [s for s in watch.seen if s[0]]
    # one warm-up batch, then the timed ones: full batches of the eval batch size
    assert len(timed) == 1 + LATENCY_BATCHES
    assert [s[1] for s in timed] == [12] * (1 + LATENCY_BATCHES)
    # padded to each batch's longest example, as the evaluations' batches are: lengths vary
    pad = 8 if torch.cuda.is_available() else 1  # the collator's multiple on a GPU
    assert all(padded == -(-longest // pad) * pad for _, _, padded, longest, _, _ in timed)
    assert len({s[2] for s in timed}) > 1
    # the evaluations' precision and threads
    assert {s[4] for s in timed} == {s[4] for s in evals}
    assert {s[4] for s in timed} == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert {s[5] for s in timed} == {1}
    assert result.status == "completed" and math.isnan(result.objective) is False


# ----------------------------------------------------------------------------- a real sweep


@pytest.mark.slow
def test_a_sweep_minimises_latency_and_its_values_are_the_logged_metric(workdir):
    proc = run_train(
        [
            "-m",
            *TINY,
            "trainer.objective=perf.latency_ms",
            "hydra.sweeper.direction=minimize",
            "hydra.sweeper.n_trials=3",
            "trainer.eval_batch_size=16",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = sweep_study(workdir, "tiny-synthetic")
    assert study.direction.name == "MINIMIZE"
    trials = study.get_trials(deepcopy=False)
    # nothing to prune on: a cost is not reported while training (prune_on unset)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    client = mlflow_client(workdir)
    by_id = {r.info.run_id: r for r in runs_of(client, "tiny-synthetic")}
    for t in trials:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert t.value == run.data.metrics["perf.latency_ms"] > 0
        assert run.data.metrics["perf.latency_examples"] == LATENCY_BATCHES * 16
        assert all(c in run.data.metrics for c in COSTS)
    best = [r for r in by_id.values() if r.data.tags.get("optuna.best") == "true"]
    assert [r.info.run_id for r in best] == [study.best_trial.user_attrs["mlflow_run_id"]]
    assert study.best_value == min(t.value for t in trials)


@pytest.mark.slow
def test_an_unknown_objective_is_one_error_line_before_any_trial(workdir):
    proc = subprocess.run(
        [sys.executable, str(TRAIN), "-m", *TINY, "trainer.objective=perf.latency"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: trainer.objective must be one of eval_f1, ")
    assert "perf.latency_ms" in errors[0] and errors[0].endswith("got 'perf.latency'")
    assert not (workdir / ".sweep").exists() and "Launching" not in proc.stdout
