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
# the same on the test split: scored once on a sweep's winner, and the one evaluation of a run
# that trains on its validation split too (data.train_on_validation: a refit)
TEST_METRICS = tuple(m.replace("eval_", "test_", 1) for m in METRICS)
# wall seconds of training, trainable parameters, inference ms per example, peak memory (MiB)
COSTS = ("perf.train_seconds", "perf.params", "perf.latency_ms", "perf.peak_memory_mb")
OBJECTIVES = ("eval_f1", "eval_accuracy", "eval_loss", *COSTS)
MINIMISED = frozenset({"eval_loss", *COSTS})
# costs measured with a clock: what trials running side by side disturb
TIMED = ("perf.latency_ms", "perf.train_seconds")


def direction(metric: str) -> str:
    """`minimize` for a loss or a cost, `maximize` for every score."""
    return "minimize" if metric in MINIMISED else "maximize"


def finite(x: Any) -> bool:
    """A real, finite number (not a bool, None, NaN or inf): a value worth comparing."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def pick(direction: str) -> Callable:
    """`min` for a study that minimises, `max` for one that maximises: the better of values."""
    return min if direction == "minimize" else max


def objectives(setting: Any) -> list[str]:
    """`trainer.objective` as a list of metric names: one name, or a list of them (several
    objectives: a multi-objective study whose first objective names the winner by default)."""
    if setting is None:
        return []
    if isinstance(setting, str):
        return [setting]
    return [str(m) for m in setting]


def directions(setting: Any, names: list[str]) -> list[str]:
    """`hydra.sweeper.direction` as a list, one per objective: unset means each metric's own
    direction; one string for one objective; a list otherwise (lengths are checked later)."""
    if setting is None:
        return [direction(m) for m in names]
    if isinstance(setting, str):
        return [setting]
    return [str(d) for d in setting]
