"""The data sets a benchmark can name with `--data`: the generated reviews, and the two real sets
in ../shared/data (see its README: `sentences`, binary; `agnews`, four news topics)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("synthetic", "sentences", "agnews")


def shared_data() -> Path:
    """../shared/data beside the checkout, or $SWEEP_SHARED_DATA."""
    return Path(os.environ.get("SWEEP_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def overrides(name: str) -> list[str]:
    """The `python train.py` overrides that select data set `name`."""
    if name == "synthetic":
        return []
    if name not in NAMES:
        raise SystemExit(f"error: --data must be one of {', '.join(NAMES)}, got {name!r}")
    d = shared_data() / name
    if not (d / "train.csv").is_file():
        raise SystemExit(f"error: {d / 'train.csv'} does not exist (set SWEEP_SHARED_DATA)")
    return [
        "data=files",
        f"data.train_file={d / 'train.csv'}",
        f"data.validation_file={d / 'validation.csv'}",
        f"data.test_file={d / 'test.csv'}",
        "data.text_column=text",
        "data.label_column=label",
    ]


def experiment(model: str, name: str) -> str:
    """The MLflow experiment `python train.py` derives for these overrides."""
    return f"{model}-{name if name == 'synthetic' else 'files'}"
