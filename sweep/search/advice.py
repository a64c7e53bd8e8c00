"""Range advice: when a sweep's best trials sit at an edge of a numeric range, the best value may
lie beyond it. One note per such parameter names it, the edge, and the widened range to try,
spelled as the Hydra override to paste.

The rule (a parameter gets a note only when all of it holds):
- its distribution in this sweep's search space is numeric: `interval`, `tag(log, interval)`,
  `int(interval)`, `range` (Optuna's Float / Int, linear or log). Choices and fixed values: none.
- the study has one objective, and at least MIN_TRIALS (6) COMPLETE trials with a finite value
  sampled the parameter (a conditional one counts only the trials where it was active); fewer
  say nothing. PRUNED and FAILED trials are not ranked: their values are not comparable.
- the top k are the k best of those trials by the study's objective and direction, k = TOP_K (3)
  or half the trials if that is fewer (never under 2). When the k-th best ties with the next one
  the top k is arbitrary (every trial scored 0, say): nothing.
- each top trial's value is placed in the range in the distribution's own scale (log10 for a log
  range): u = 0 at the low end, 1 at the high end. All u >= 0.9 (the top decile) or all u <= 0.1
  (the bottom decile): that edge. A value outside the range (an enqueued trial) is beyond it.
- the widened range moves that edge outwards and keeps the other: a log range by its own width in
  decades but at most one decade (1e-5..1e-4 -> 1e-5..1e-3; 1e-4..2e-4 -> 1e-4..4e-4), a linear
  range by half its width (0.0..0.2 -> 0.0..0.3); the new end rounded to few digits, an int
  range's to whole steps (at least one).
- natural bounds hold it in: a range whose low end is >= 0 stays >= 0; a float range inside
  [0, 1] (a probability, a ratio) stays inside it; a log range stays > 0 (an int one >= 1). Then
  the project's own checks (sweep/core/config.validate: `optimizer.lr > 0`,
  `scheduler.warmup_ratio < 1`, a polynomial schedule's `end_lr` below the lr, ...) on every top
  trial's configuration with the new end: where they refuse it, the end is pulled back to the
  furthest value they accept (bisection, then rounded towards the old end), and the note says
  what held it.
- an edge that cannot move (it is already at its bound): nothing.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

MIN_TRIALS = 6  # complete trials that sampled the parameter, before anything is said
TOP_K = 3  # the best trials that must all sit in one edge decile
EDGE = 0.1  # an edge decile, as a fraction of the range in its own scale
LOG_DECADES = 1.0  # a log range widens by its own width in decades, at most this
LINEAR_FRACTION = 0.5  # a linear range widens by this fraction of its width
TAG = "sweep.range_advice"  # the parent run's tag: the notes, one per line

# the project's check of one value: (parameter, value, the top trials) -> why it is refused, or
# None when every top trial's configuration accepts it
Check = Callable[[str, float, list[FrozenTrial]], str | None]
Numeric = FloatDistribution | IntDistribution


@dataclass(frozen=True)
class Advice:
    name: str
    edge: str  # "top" or "bottom"
    old: Numeric
    new: Numeric
    best: tuple[float, ...]  # the parameter's values in the top k trials, best first
    complete: int  # complete trials that sampled the parameter
    held: str = ""  # what held the new end short of the full widening, or ""

    @property
    def override(self) -> str:
        return f"{self.name}={spell(self.new)}"

    @property
    def note(self) -> str:
        where = "above" if self.edge == "top" else "below"
        values = ", ".join(_num(v, 3) for v in self.best)
        text = (
            f"{self.name}: the {len(self.best)} best of {self.complete} complete trials lie in "
            f"the {self.edge} tenth of its range {spell(self.old)} ({values}); the best may lie "
            f"{where} it: try '{self.override}'"
        )
        if self.held:
            end = self.new.high if self.edge == "top" else self.new.low
            text += f" (held at {_num(end)}: {self.held})"
        return text


def for_study(study: optuna.Study, distributions: Mapping[str, BaseDistribution], check=None):
    """The advice for a study's trials over the sweep's space; none for several objectives (the
    best trials are a front, not a ranking)."""
    if len(study.directions) != 1:
        return []
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return advise(trials, distributions, study.direction.name.lower(), check)


def advise(
    trials: Iterable[FrozenTrial],
    distributions: Mapping[str, BaseDistribution],
    direction: str,
    check: Check | None = None,
    *,
    min_trials: int = MIN_TRIALS,
    top_k: int = TOP_K,
) -> list[Advice]:
    """One Advice per numeric parameter whose best trials sit at one edge of its range (the
    module's docstring has the rule), in the order of `distributions`."""
    trials = list(trials)
    out = []
    for name, dist in distributions.items():
        if not isinstance(dist, FloatDistribution | IntDistribution) or dist.high <= dist.low:
            continue
        ranked = _ranked(trials, name, direction)
        if len(ranked) < min_trials:
            continue
        top = _top(ranked, top_k)
        if not top:
            continue
        edge = _edge(dist, [t.params[name] for t in top])
        if edge is None:
            continue
        widened = _widen(name, dist, edge, top, check)
        if widened is not None:
            new, held = widened
            best = tuple(t.params[name] for t in top)
            out.append(Advice(name, edge, dist, new, best, len(ranked), held))
    return out


def _ranked(trials: list[FrozenTrial], name: str, direction: str) -> list[FrozenTrial]:
    """The complete trials with a finite value that sampled `name`, best first (ties: the
    earlier trial first)."""
    have = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and len(t.values or ()) == 1  # one objective (a front is not a ranking)
        and math.isfinite(t.values[0])
        and isinstance(t.params.get(name), int | float)
        and not isinstance(t.params.get(name), bool)
    ]
    sign = 1.0 if direction == "minimize" else -1.0
    return sorted(have, key=lambda t: (sign * t.value, t.number))


def _top(ranked: list[FrozenTrial], top_k: int) -> list[FrozenTrial]:
    """The best k, or [] when the k-th ties with the next one (which k are best is arbitrary)."""
    k = min(top_k, len(ranked) // 2)
    if k < 2:
        return []
    if len(ranked) > k and ranked[k - 1].value == ranked[k].value:
        return []
    return ranked[:k]


def _scale(dist: Numeric, x: float) -> float:
    return math.log10(x) if dist.log else float(x)


def _unscale(dist: Numeric, s: float) -> float:
    return 10.0**s if dist.log else s


def position(dist: Numeric, x: float) -> float:
    """Where x lies in the range in the distribution's own scale: 0 at low, 1 at high."""
    lo, hi = _scale(dist, dist.low), _scale(dist, dist.high)
    if dist.log and x <= 0:
        return -math.inf
    return (_scale(dist, x) - lo) / (hi - lo)


def _edge(dist: Numeric, values: list[float]) -> str | None:
    u = [position(dist, v) for v in values]
    if all(x >= 1 - EDGE for x in u):
        return "top"
    if all(x <= EDGE for x in u):
        return "bottom"
    return None


def _target(dist: Numeric, edge: str) -> float:
    """The new end before bounds: the edge moved outwards in the range's own scale, rounded to a
    few digits (a float range) or to whole steps, at least one (an int range or a stepped one)."""
    lo, hi = _scale(dist, dist.low), _scale(dist, dist.high)
    move = min(hi - lo, LOG_DECADES) if dist.log else (hi - lo) * LINEAR_FRACTION
    old = dist.high if edge == "top" else dist.low
    raw = _unscale(dist, hi + move if edge == "top" else lo - move)
    if isinstance(dist, IntDistribution) or dist.step is not None:
        step = dist.step or 1
        n = max(1, math.ceil(round(abs(raw - old) / step, 6)))  # 576.0000001 steps are 576
        end = old + n * step if edge == "top" else old - n * step
        return int(round(end)) if isinstance(dist, IntDistribution) else end
    return _nice(dist, raw, old)


def _nice(dist: Numeric, raw: float, old: float) -> float:
    """`raw` with the fewest significant digits that still moves the edge by 0.75 to 1.5 times
    the intended move (in the range's scale): 0.004 rather than 0.004000000000000001."""
    move = _scale(dist, raw) - _scale(dist, old)
    for digits in range(1, 9):
        r = float(f"{raw:.{digits}g}")
        if (dist.log and r <= 0) or move == 0:
            continue
        if 0.75 <= (_scale(dist, r) - _scale(dist, old)) / move <= 1.5:
            return r
    return raw


def _natural(dist: Numeric) -> tuple[tuple[float | None, str], tuple[float | None, str]]:
    """Bounds a widened range keeps, from the range itself: ((lower, why), (upper, why))."""
    lower: tuple[float | None, str] = (None, "")
    if isinstance(dist, IntDistribution) and dist.log:
        lower = (1, "an int log range stays >= 1")
    elif dist.low >= 0:  # a log float range stays > 0 by itself (it widens by a factor)
        lower = (0, "a range starting at or above 0 stays >= 0")
    upper: tuple[float | None, str] = (None, "")
    if isinstance(dist, FloatDistribution) and dist.low >= 0 and dist.high <= 1:
        upper = (1.0, "a range inside [0, 1] (a probability, a ratio) stays inside it")
    return lower, upper


def _widen(name: str, dist: Numeric, edge: str, top, check: Check | None):
    """(the widened distribution, what held its new end back or ""), or None when the edge
    cannot move."""
    old = dist.high if edge == "top" else dist.low
    end = _target(dist, edge)
    (lower, why_lower), (upper, why_upper) = _natural(dist)
    held = ""
    if edge == "top" and upper is not None and end > upper:
        end, held = upper, why_upper
    if edge == "bottom" and lower is not None and end < lower:
        end, held = lower, why_lower
    if check is not None and _beyond(end, old, edge):
        end, refused = _checked(name, dist, edge, end, check, top)
        held = refused or held
    if not _beyond(end, old, edge):
        return None
    low, high = (dist.low, end) if edge == "top" else (end, dist.high)
    if isinstance(dist, IntDistribution):
        return IntDistribution(int(low), int(high), log=dist.log, step=dist.step), held
    return FloatDistribution(low, high, log=dist.log, step=dist.step), held


def _beyond(end: float, old: float, edge: str) -> bool:
    return end > old if edge == "top" else end < old


def _checked(name: str, dist: Numeric, edge: str, end: float, check: Check, top):
    """The new end the project's checks accept for every top trial: `end` itself, or the
    furthest accepted value between the old end and it, with the refusal's reason."""
    old = dist.high if edge == "top" else dist.low
    refused = check(name, end, top)
    if refused is None:
        return end, ""
    if check(name, old, top) is not None:  # the check refuses the sweep's own range: no use
        return end, ""
    if isinstance(dist, IntDistribution) or dist.step is not None:
        step = dist.step or 1
        good, bad = 0, round(abs(end - old) / step)  # in steps beyond the old end
        while bad - good > 1:
            mid = (good + bad) // 2
            value = old + mid * step if edge == "top" else old - mid * step
            good, bad = (mid, bad) if check(name, value, top) is None else (good, mid)
        value = old + good * step if edge == "top" else old - good * step
        return (int(value) if isinstance(dist, IntDistribution) else value), refused
    good, bad = _scale(dist, old), _scale(dist, end)
    for _ in range(30):  # 1e-9 of the move
        mid = (good + bad) / 2
        good, bad = (mid, bad) if check(name, _unscale(dist, mid), top) is None else (good, mid)
    return _inward(name, _unscale(dist, good), old, edge, check, top), refused


def _inward(name: str, x: float, old: float, edge: str, check: Check, top) -> float:
    """x rounded towards the old end on the coarsest decimal grid that keeps it beyond the old
    end and accepted: 0.99 rather than 0.9999999999."""
    gap = abs(x - old)
    if gap == 0:
        return x
    for k in range(8):
        grid = 10.0 ** (math.floor(math.log10(gap)) - k)
        r = (math.floor if edge == "top" else math.ceil)(x / grid) * grid
        r = float(f"{r:.12g}")
        if _beyond(r, old, edge) and check(name, r, top) is None:
            return r
    return x


# --------------------------------------------------------------------------- spelling


def _num(x: float, digits: int = 6) -> str:
    """A number as Hydra's grammar reads it back: 1e-5 (not 1e-05; below 0.01 in this form, like
    the search configs), 0.3, 1.0 (a float stays a float), 64 (an int)."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    s = f"{x:.{digits - 1}e}" if 0 < abs(x) < 1e-2 else f"{x:.{digits}g}"
    if "e" in s:
        mant, exp = s.split("e")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        s = f"{mant}e{int(exp)}"
    elif "." not in s and s.lstrip("-").isdigit():
        s += ".0"
    return s


def spell(dist: Numeric) -> str:
    """A distribution in the search grammar of conf/search/*.yaml (the inverse of
    sweep.search.sweeper.distribution_of)."""
    if isinstance(dist, IntDistribution):
        if dist.log:
            return f"tag(log, int(interval({dist.low}, {dist.high})))"
        if dist.step != 1:
            return f"range({dist.low}, {dist.high + dist.step}, {dist.step})"
        return f"int(interval({dist.low}, {dist.high}))"
    inner = f"interval({_num(float(dist.low))}, {_num(float(dist.high))})"
    return f"tag(log, {inner})" if dist.log else inner


# --------------------------------------------------------------------------- the sweep's hook


def project_check(compose: Callable[[list[str]], Any], fixed: list[str]) -> Check:
    """The project's own checks (sweep/core/config.validate) as a Check: each top trial's
    configuration (composed once: `fixed` plus its parameters), with the parameter set to the
    value. A key the configuration lacks is not checked."""
    from omegaconf import OmegaConf

    from sweep.core.config import ConfigError, validate
    from sweep.core.overrides import to_override

    configs: dict[tuple, Any] = {}  # by the trial's parameters: composed once each
    absent = object()

    def check(name: str, value: float, top: list[FrozenTrial]) -> str | None:
        for t in top:
            key = tuple(sorted((k, repr(v)) for k, v in t.params.items()))
            if key not in configs:
                configs[key] = None
                with contextlib.suppress(Exception):  # not composable: not checked
                    overrides = [to_override(k, v) for k, v in t.params.items()]
                    configs[key] = compose([*fixed, *overrides])
            base = configs[key]
            if (
                base is None
                or "/" in name
                or OmegaConf.select(base, name, default=absent) is absent
            ):
                continue
            cfg = copy.deepcopy(base)
            OmegaConf.update(cfg, name, value, merge=False)
            try:
                validate(cfg, check_device=False)
            except ConfigError as e:
                return str(e)
        return None

    return check


def notes(study: optuna.Study, distributions, compose=None, fixed=()) -> list[str]:
    """The notes the end of a sweep prints and logs on its parent run; never stops a sweep."""
    try:
        check = project_check(compose, list(fixed)) if compose is not None else None
        return [a.note for a in for_study(study, distributions, check)]
    except Exception as e:  # noqa: BLE001 - advice is a bonus, the summary must be written
        log.warning("no range advice: %s", e)
        return []
