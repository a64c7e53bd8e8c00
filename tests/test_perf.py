"""Mechanisms that make sweeps fast: length-grouped batches with dynamic padding, a fixed subset
for the pruner's evaluations, F1 without scikit-learn.

.venv/bin/python -m pytest tests/test_perf.py
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from conftest import compose
from transformers import DataCollatorWithPadding, Trainer

from sweep.loop import f1, prepare, run_training, training_arguments
from sweep.model import build_model, load_tokenizer


def padded_share(group_by_length: bool, tmp_path) -> float:
    cfg = compose(["model=tiny", "tracking=none", f"trainer.group_by_length={group_by_length}"])
    tok = load_tokenizer(cfg.model)
    # a mixed-length fixture: short and long reviews interleaved
    texts = [("great film. " * (1 + (i % 2) * 30 + i % 7)).strip() for i in range(256)]
    enc = tok(texts, truncation=True, max_length=128)
    ds = datasets.Dataset.from_dict(
        {**enc, "labels": [i % 2 for i in range(256)], "length": [len(x) for x in enc["input_ids"]]}
    )
    trainer = Trainer(
        model=build_model(cfg.model, 2, seed=0),
        args=training_arguments(cfg, total_steps=16, output_dir=str(tmp_path)),
        train_dataset=ds,
        eval_dataset=ds,
        data_collator=DataCollatorWithPadding(tok, pad_to_multiple_of=8),
    )
    real = padded = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        real += int(mask.sum())
        padded += mask.numel()
    return 1 - real / padded


def test_length_grouping_cuts_padding(tmp_path):
    grouped = padded_share(True, tmp_path)
    shuffled = padded_share(False, tmp_path)
    assert shuffled > 0.3  # random batches mix short and long reviews
    assert grouped < shuffled / 2


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
