"""What the metrics mean: the rules every layer shares.

`eval_loss` is the one metric that is minimised; `eval_accuracy` and `eval_f1` are maximised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

METRICS = ("eval_loss", "eval_accuracy", "eval_f1")
MINIMISED = frozenset({"eval_loss"})


def direction(metric: str) -> str:
    """`minimize` for a loss, `maximize` for every score."""
    return "minimize" if metric in MINIMISED else "maximize"


def finite(x: Any) -> bool:
    """A real, finite number (not a bool, None, NaN or inf): a value worth comparing."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def pick(direction: str) -> Callable:
    """`min` for a study that minimises, `max` for one that maximises: the better of values."""
    return min if direction == "minimize" else max
