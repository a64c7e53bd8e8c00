"""What the metrics mean: the rules every layer shares.

Evaluation metrics (`METRICS`) are logged at every evaluation: `eval_loss` is minimised,
`eval_accuracy` and `eval_f1` are maximised. Cost metrics (`COSTS`) are measured once, at the end
of a run's training (sweep/train/perf.py says how), and are all minimised. Either kind can be a
sweep's objective (`trainer.objective`); only an evaluation metric can be pruned on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

METRICS = ("eval_loss", "eval_accuracy", "eval_f1")
# wall seconds of training, trainable parameters, inference ms per example, peak memory (MiB)
COSTS = ("perf.train_seconds", "perf.params", "perf.latency_ms", "perf.peak_memory_mb")
OBJECTIVES = ("eval_f1", "eval_accuracy", "eval_loss", *COSTS)
MINIMISED = frozenset({"eval_loss", *COSTS})


def direction(metric: str) -> str:
    """`minimize` for a loss or a cost, `maximize` for every score."""
    return "minimize" if metric in MINIMISED else "maximize"


def finite(x: Any) -> bool:
    """A real, finite number (not a bool, None, NaN or inf): a value worth comparing."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def pick(direction: str) -> Callable:
    """`min` for a study that minimises, `max` for one that maximises: the better of values."""
    return min if direction == "minimize" else max
