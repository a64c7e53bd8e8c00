"""Mechanisms that make sweeps fast: length-grouped batches with dynamic padding, a fixed subset
for the pruner's evaluations, F1 without scikit-learn; and what every run logs about its cost
(`perf.*`: time, tokens, samples/s, peak memory).

.venv/bin/python -m pytest tests/test_perf.py
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import ROOT, compose, mlflow_client
from transformers import DataCollatorWithPadding

from sweep.core.config import ConfigError, batch_order
from sweep.train.loop import SweepTrainer, f1, prepare, run_training, training_arguments
from sweep.train.model import build_model, load_tokenizer


def batch_lengths(order: str, tmp_path, legacy: bool | None = None, seed: int = 0):
    """The real (unpadded) lengths of each training batch, and the padded share over all."""
    over = ["model=tiny", "tracking=none", f"trainer.batch_order={order}", f"trainer.seed={seed}"]
    if legacy is not None:
        over.append(f"trainer.group_by_length={legacy}")
    cfg = compose(over)
    tok = load_tokenizer(cfg.model)
    # a mixed-length fixture: short and long reviews interleaved
    texts = [("great film. " * (1 + (i % 2) * 30 + i % 7)).strip() for i in range(1000)]
    enc = tok(texts, truncation=True, max_length=128)
    ds = datasets.Dataset.from_dict(
        {
            **enc,
            "labels": [i % 2 for i in range(1000)],
            "length": [len(x) for x in enc["input_ids"]],
        }
    )
    trainer = SweepTrainer(
        model=build_model(cfg.model, 2, seed=0),
        args=training_arguments(cfg, total_steps=16, output_dir=str(tmp_path)),
        train_dataset=ds,
        eval_dataset=ds,
        data_collator=DataCollatorWithPadding(tok, pad_to_multiple_of=8),
        batch_order=batch_order(cfg.trainer),
    )
    real = padded = 0
    lengths = []
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        real += int(mask.sum())
        padded += mask.numel()
        lengths.append(mask.sum(dim=1).tolist())
    return lengths, 1 - real / padded


def rises(lengths) -> int:
    """How many times the next batch's longest example is longer than this batch's."""
    tops = [max(b) for b in lengths]
    return sum(a < b for a, b in zip(tops[:-1], tops[1:], strict=True))


def test_length_grouping_cuts_padding(tmp_path):
    _, shuffled = batch_lengths("random", tmp_path)
    _, grouped = batch_lengths("length_grouped", tmp_path)
    _, bucketed = batch_lengths("bucketed", tmp_path)
    assert shuffled > 0.3  # random batches mix short and long reviews
    assert grouped < shuffled / 2
    assert bucketed < shuffled / 2


def test_bucketed_batches_come_in_random_order_and_cover_every_example_once(tmp_path):
    lengths, _ = batch_lengths("bucketed", tmp_path)
    assert len(lengths) == 63  # 1000 examples, batch 16: 62 full batches and a tail of 8
    assert all(len(b) == 16 for b in lengths[:-1]) and len(lengths[-1]) == 8
    assert sum(len(b) for b in lengths) == 1000
    # length_grouped runs long to short inside each of its 5 windows of 15 batches (a rise only
    # where a window starts, and one where it moved the longest example first); bucketed
    # shuffles the batches, so the length rises from one batch to the next about as often as not
    grouped, _ = batch_lengths("length_grouped", tmp_path)
    assert rises(grouped) <= 6
    assert rises(lengths) > 0.25 * (len(lengths) - 1)
    # seeded: the same seed gives the same batches, another seed others
    assert batch_lengths("bucketed", tmp_path)[0] == lengths
    assert batch_lengths("bucketed", tmp_path, seed=1)[0] != lengths


def test_legacy_group_by_length_decides_when_set(tmp_path):
    # runs logged before trainer.batch_order carry trainer.group_by_length: they reproduce as run
    grouped, _ = batch_lengths("bucketed", tmp_path, legacy=True)
    assert grouped == batch_lengths("length_grouped", tmp_path)[0]
    shuffled, _ = batch_lengths("bucketed", tmp_path, legacy=False)
    assert shuffled == batch_lengths("random", tmp_path)[0]


def test_pruning_evaluations_use_a_fixed_subset_and_the_last_one_all(tmp_path):
    # 61 evaluation samples: an accuracy on all of them is k/61, on the 16-sample subset k/16
    over = ["model=tiny", "tracking=none", "data.train_size=96", "data.eval_size=61"]
    over += ["data.max_length=32", "trainer.train_batch_size=16", "trainer.eval_every=2"]
    over += ["trainer.eval_subset=16", f"data.cache_dir={tmp_path}"]
    cfg = compose(over)
    a, b = prepare(cfg), prepare(cfg)
    assert len(a.eval) == 61 and len(a.eval_subset) == 16
    # the same rows in every trial and process (the pruner compares trials step by step)
    assert a.eval_subset["input_ids"] == b.eval_subset["input_ids"]
    lengths = a.eval_subset["length"]
    assert lengths == sorted(lengths) and len(set(map(tuple, a.eval_subset["input_ids"]))) > 1

    result = run_training(cfg, prepared=a)
    evals = result.history
    assert [h["step"] for h in evals] == [2, 4, 6]  # 96 / 16 = 6 steps
    for h in evals[:-1]:
        assert (h["eval_accuracy"] * 16) == pytest.approx(round(h["eval_accuracy"] * 16))
    final = evals[-1]["eval_accuracy"] * 61
    assert final == pytest.approx(round(final))
    assert result.objective == evals[-1]["eval_f1"]  # the objective comes from the whole set

    # without a subset, every evaluation sees the whole set
    full = run_training(compose([*over[:-1], "trainer.eval_subset=0"]))
    for h in full.history:
        assert (h["eval_accuracy"] * 61) == pytest.approx(round(h["eval_accuracy"] * 61))


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_f1_matches_scikit_learn(n_classes):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(n_classes)
    average = "binary" if n_classes == 2 else "macro"
    cases = [
        (rng.integers(0, n_classes, 50), rng.integers(0, n_classes, 50)),
        (rng.integers(0, n_classes, 50), np.zeros(50, dtype=int)),  # never predicts class 1
        (np.zeros(20, dtype=int), np.zeros(20, dtype=int)),  # only one class anywhere
        (np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0])),
    ]
    for labels, preds in cases:
        want = f1_score(labels, preds, average=average, zero_division=0)
        assert f1(labels, preds, n_classes) == pytest.approx(want), (labels, preds)


def test_sdpa_and_eager_attention_give_the_same_model():
    # model.attn_implementation=sdpa (the default) runs torch's fused attention kernel; it must
    # compute what the eager implementation does, padding mask included
    import torch

    models = {}
    for attn in ("sdpa", "eager"):
        cfg = compose(["model=tiny", "tracking=none", f"model.attn_implementation={attn}"])
        models[attn] = build_model(cfg.model, 2, seed=0).eval()
        assert models[attn].config._attn_implementation == attn
    tok = load_tokenizer(cfg.model)
    texts = ["a fine film", "dull, long and badly acted " * 5]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        sdpa, eager = (models[a](**batch).logits for a in ("sdpa", "eager"))
    torch.testing.assert_close(sdpa, eager, rtol=1e-5, atol=1e-5)


def test_bad_attention_implementation_is_refused():
    from sweep.core.config import ConfigError, validate

    with pytest.raises(ConfigError, match="model.attn_implementation must be one of"):
        validate(compose(["model=tiny", "tracking=none", "model.attn_implementation=fast"]))


def test_train_flops_formula_matches_torch_flop_counter():
    # benchmarks/gpu.py's MFU rests on 6·P·B·s + 12·L·h·B·s² per training step: a third of it
    # must be what torch counts for one forward pass (eager attention: plain matmuls)
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    gpu = gpu_benchmark()
    cfg = compose(["model=minilm", "tracking=none", "model.attn_implementation=eager"])
    model = build_model(cfg.model, 2, seed=0).eval()
    b, s = 4, 96
    ids = torch.randint(1000, 20000, (b, s))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    predicted = gpu.train_flops(*gpu.model_shape(model), b, s) / 3
    # the pooler and classifier see one token a sequence, the formula counts them per token: +1.4%
    assert predicted == pytest.approx(counter.get_total_flops(), rel=0.03)


def gpu_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_compile_runs_the_compiled_model_and_learns_the_same():
    import torch._dynamo
    from torch._dynamo.utils import counters

    base = ["model=tiny", "tracking=none", "trainer.precision=fp32", "trainer.eval_every=5"]
    base += ["data.train_size=160", "data.eval_size=32", "trainer.train_batch_size=16"]
    where = str(Path(torch.__file__).parent)
    if any(c.isspace() for c in where) and not torch.cuda.is_available():
        # inductor's C++ build cannot link torch from there: refused in one line instead
        with pytest.raises(ConfigError, match="path with a space"):
            run_training(compose([*base, "trainer.compile=true"]))
        return
    plain = run_training(compose(base))
    torch._dynamo.reset()
    counters.clear()
    compiled = run_training(compose([*base, "trainer.compile=true"]))
    assert counters["stats"]["unique_graphs"] > 0  # torch.compile really traced the model
    torch._dynamo.reset()
    assert compiled.steps == plain.steps == 10
    for a, b in zip(compiled.history, plain.history, strict=True):
        assert a["step"] == b["step"]
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-3)


def test_evaluations_run_under_inference_mode_and_training_does_not():
    import torch
    from transformers import TrainerCallback

    seen = []

    class Watch(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.register_forward_hook(
                lambda m, i, o: seen.append((m.training, torch.is_inference_mode_enabled()))
            )

    cfg = compose(["model=tiny", "tracking=none", "trainer.eval_every=5", "data.train_size=160"])
    result = run_training(cfg, callbacks=[Watch()])
    assert result.steps == 10 and len(result.history) == 2
    train = [inf for training, inf in seen if training]
    evals = [inf for training, inf in seen if not training]
    assert train and not any(train)  # training after an evaluation still builds its graph
    assert evals and all(evals)


def perf_run(workdir, over: list[str]):
    """One tiny run tracked in `workdir`'s real SQLite store; its logged metrics."""
    from sweep.train.runner import run_job

    uri = f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"
    base = ["model=tiny", "data.eval_size=64", "trainer.eval_every=5", uri]
    outcome = run_job(compose([*base, *over]), want_outcome=True)
    return mlflow_client(workdir).get_run(outcome.run_id).data.metrics


def test_every_run_logs_its_peak_memory_and_training_samples_per_second(workdir):
    m = perf_run(workdir, ["data.train_size=160", "trainer.train_batch_size=16"])
    # the process's resident memory at its highest during the run: torch and transformers
    # alone hold ~500 MB, and the tiny model's run adds little to it
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    assert 100 < m["perf.peak_memory_mb"] < total_mb
    assert m["perf.train_samples"] == 160  # 10 steps of 16
    rate = m["perf.train_samples"] / m["perf.step_seconds"]
    assert m["perf.train_samples_per_s"] == pytest.approx(rate, rel=0.01)


def test_peak_memory_is_each_runs_own_not_the_processes(workdir):
    # the big batch first: a process-wide peak would carry it into the small run after it
    common = ["data.max_length=512", "trainer.max_steps=1", "trainer.eval_batch_size=16"]
    big = perf_run(workdir, [*common, "data.train_size=512", "trainer.train_batch_size=512"])
    small = perf_run(workdir, [*common, "data.train_size=160", "trainer.train_batch_size=16"])
    # batch 512 of reviews up to 88 tokens: hundreds of MB of activations more than batch 16
    assert big["perf.peak_memory_mb"] > small["perf.peak_memory_mb"] + 200
