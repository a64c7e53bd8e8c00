"""Mechanisms that make sweeps fast: length-grouped batches with dynamic padding.

.venv/bin/python -m pytest tests/test_perf.py
"""

from __future__ import annotations

import datasets
from conftest import compose
from transformers import DataCollatorWithPadding, Trainer

from sweep.loop import training_arguments
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
