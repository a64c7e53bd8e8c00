"""Several objectives and constraints: what a trial is worth when one number is not enough.

- Objectives: `trainer.objective` is one metric or a list; `hydra.sweeper.direction` gives one
  direction per objective (default: each metric's own). With two or more the study is Optuna's
  multi-objective study: the sampler (TPE, NSGA-II, GP, random, QMC, grid) sees every value.
- Constraints: `hydra.sweeper.constraints` maps a metric to a bound that a trial must be no worse
  than, in the metric's own direction: `{perf.latency_ms:5}` is latency at most 5 ms per
  example, `{eval_f1:0.8}` eval_f1 at least 0.8. A trial's constraint values (Optuna's
  convention: <= 0 is met) are `value - bound` for a minimised metric and `bound - value` for a
  maximised one, set on the trial with Optuna's `Trial.set_constraint` (one per metric) before
  it is told, so the samplers that read constraints (TPE, NSGA-II, GP) steer away from
  infeasible regions; a metric the trial never measured (a pruned trial's costs) counts as
  violated by 1 + |bound|. Every judged trial gets the user attr FEASIBLE; the Pareto front, the
  best trial, confirmation and the winner are chosen among feasible trials only, whatever the
  sampler.
- The front: the feasible complete trials no other feasible complete trial dominates (at least as
  good on every objective, better on one). Computed here rather than with `study.best_trials`,
  which knows feasibility only when the sampler recorded it and counts imported trials.
- The winner rule: the best on one objective (`hydra.sweeper.confirm.winner_by`, default the
  first) among the feasible front members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from sweep.core import metrics
from sweep.search import grid

FEASIBLE = "sweep.feasible"  # trial user attr: every constraint met
IMPORTED = grid.IMPORTED  # trial user attr of a warm start's imported trials


@dataclass
class Objectives:
    """What a sweep optimises: metric names and directions, bounds, the winner's objective."""

    names: list[str]
    directions: list[str]
    bounds: dict[str, float] = field(default_factory=dict)
    winner_by: str | None = None

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    @property
    def by(self) -> int:
        """The index of the objective that picks the winner."""
        return self.names.index(self.winner_by) if self.winner_by in self.names else 0

    @property
    def winner_metric(self) -> str:
        return self.names[self.by]

    @property
    def winner_direction(self) -> str:
        return self.directions[self.by]

    def rule(self) -> str:
        """The winner rule in words, for the confirmation table and the summary."""
        how = "highest" if self.winner_direction == "maximize" else "lowest"
        among = "feasible Pareto-front members" if self.several else "feasible trials"
        why = "confirm.winner_by" if self.winner_by else "the first objective"
        pool = among if self.several or self.bounds else "trials"
        return f"{how} {self.winner_metric} ({why}) among the {pool}"


def constraint_values(bounds: dict[str, float], measured: dict[str, Any] | None) -> list[float]:
    """One value per bound, in the bounds' order: <= 0 when the trial meets it."""
    out = []
    for name, bound in bounds.items():
        value = (measured or {}).get(name)
        if not metrics.finite(value):
            out.append(1.0 + abs(bound))
        elif metrics.direction(name) == "minimize":
            out.append(float(value) - bound)
        else:
            out.append(bound - float(value))
    return out


def constraints_func(trial: FrozenTrial) -> list[float]:
    """A trial's constraint values as Optuna's plots take them (a trial judged by none: met)."""
    return list(trial.constraints.values()) or [0.0]


def record(trial, bounds: dict[str, float], measured: dict[str, Any] | None) -> bool | None:
    """Set the trial's constraint values (Optuna's `set_constraint`, keyed by metric) and its
    feasibility; None without bounds."""
    if not bounds:
        return None
    values = constraint_values(bounds, measured)
    for name, value in zip(bounds, values, strict=True):
        trial.set_constraint(name, value)
    feasible = all(v <= 0 for v in values)
    trial.set_user_attr(FEASIBLE, feasible)
    return feasible


def feasible(t: FrozenTrial) -> bool:
    return bool(t.user_attrs.get(FEASIBLE, True))


def first_value(t: FrozenTrial) -> float | None:
    """The first objective's value, for one objective or several."""
    return t.values[0] if t.values else None


def candidates(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The complete, feasible trials of this sweep with every value finite (not imported)."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values
        and all(math.isfinite(v) for v in t.values)
        and feasible(t)
        and IMPORTED not in t.user_attrs
    ]


def _dominates(a: list[float], b: list[float], signs: list[float]) -> bool:
    """a is at least as good as b on every objective and better on one (signs: -1 maximise)."""
    pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b, strict=True)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto(trials: list[FrozenTrial], directions: list[str]) -> list[FrozenTrial]:
    """The feasible Pareto front of `trials`, ordered by trial number."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    pool = candidates(trials)
    front = [
        t
        for t in pool
        if not any(_dominates(o.values, t.values, signs) for o in pool if o is not t)
    ]
    return sorted(front, key=lambda t: t.number)


def ranked(trials: list[FrozenTrial], objectives: Objectives) -> list[FrozenTrial]:
    """The winner's pool best first by the winner rule: the front for several objectives, the
    feasible trials for one; ties by trial number."""
    pool = pareto(trials, objectives.directions) if objectives.several else candidates(trials)
    by, sign = objectives.by, (-1.0 if objectives.winner_direction == "maximize" else 1.0)
    return sorted(pool, key=lambda t: (sign * t.values[by], t.number))


def describe(t: FrozenTrial, names: list[str]) -> str:
    """`eval_f1=0.9012 perf.latency_ms=3.21` for one trial."""
    return " ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values or [], strict=False))
