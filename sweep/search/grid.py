"""`hydra.sweeper.sampler=grid`: every point of a finite search space, each exactly once.

The points: every combination of the searched values (`choice(...)`, `range(...)`,
`int(interval(...))`: each integer of it). A conditional parameter (`hydra.sweeper.conditions`)
is part of a point only where its condition holds, so `scheduler=choice(constant,linear)` with a
warm-up `choice(0,0.1)` that only linear uses gives 3 points, not 4: no two points train the
same configuration. A continuous `interval(...)` that some point would use has no finite set of
values: refused by name (GridError, exit 2). One that no point uses (its condition never holds,
e.g. the scheduler is fixed on the command line) is simply left out.

Why a queue and not Optuna's GridSampler: in Optuna 5.1 that sampler gives each new trial a
point not yet finished or running, so workers that ask without a common lock can take the same
point; once every point has started it re-runs a random one (its docs: "the total number of
actual trials may exceed the size of the grid"); and its product runs over every parameter,
inactive conditional ones included (the same configuration several times). Here the points are
enqueued as WAITING trials with fixed params
(what `study.enqueue_trial` stores) under the study lock, before any trial is asked for: a point
is in the study once from then on, a worker pops it once (`study.ask` under the same lock), an
interrupted or lost trial is retried with its own params (sweep/search/study.py), and a re-run
of the command enqueues only points the study does not hold yet (a first run killed while
enqueueing), in the same order. The sweeper asks no more trials than are WAITING (`GridQueue`
raises if it is ever asked to draw a value), and the budget is at most the grid's size.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from sweep.core.errors import UserError

NAME = "grid"
MAX_POINTS = 10_000  # a grid larger than this is a typo (range(0, 100000)), not a sweep
DEFAULT_N_TRIALS = 12  # hydra.sweeper.n_trials when unset and the sampler is not grid
IMPORTED = "sweep.imported_from"  # a warm start's trials ran elsewhere: no point of this grid


class GridError(UserError, ValueError):
    """The search space has no finite grid; one line naming the parameter."""


def values_of(name: str, dist: BaseDistribution) -> list[Any]:
    """The values a grid takes for one parameter."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = round((dist.high - dist.low) / dist.step)
        return [dist.low + i * dist.step for i in range(n + 1)]
    kind = "tag(log, interval(...))" if getattr(dist, "log", False) else "interval(...)"
    raise GridError(
        f"hydra.sweeper.sampler=grid needs a finite set of values, but {name} is a continuous "
        f"{kind} from {dist.low:g} to {dist.high:g}: give it choice(...) or range(...)"
    )


class _Walk:
    """Stands in for an Optuna trial while SearchSpace.suggest runs: the i-th value asked for is
    the `path[i]`-th of its values (the first past the path), and what was asked is recorded."""

    def __init__(self, path: list[int]):
        self.path = path
        self.chosen: list[int] = []
        self.sizes: list[int] = []

    def _pick(self, name: str, values: list[Any]) -> Any:
        i = self.path[len(self.chosen)] if len(self.chosen) < len(self.path) else 0
        self.chosen.append(i)
        self.sizes.append(len(values))
        return values[i]

    def suggest_categorical(self, name: str, choices) -> Any:
        return self._pick(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, log: bool = False, step: int = 1):
        return self._pick(name, values_of(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, step=None):
        return self._pick(name, values_of(name, FloatDistribution(low, high, log=log, step=step)))


def points(space: Any, seed: int = 0) -> list[dict[str, Any]]:
    """Every point of `space` (a sweeper SearchSpace) once, in an order shuffled by
    `hydra.sweeper.seed`: a budget below the grid's size then samples all of it, not one
    corner. The walk runs the space's own `suggest`, so a point holds exactly the parameters a
    trial with those values suggests (conditions evaluated the same way)."""
    found: dict[str, dict[str, Any]] = {}
    path: list[int] = []
    while True:
        walk = _Walk(path)
        values = space.suggest(walk)
        found.setdefault(key(values), values)
        if len(found) > MAX_POINTS:
            raise GridError(
                f"hydra.sweeper.sampler=grid: the search space has more than {MAX_POINTS} "
                "points; search fewer values (or another sampler)"
            )
        # the next path: advance the last choice that has values left (an odometer whose
        # digits after it depend on it, so they start again at their first value)
        k = len(walk.chosen) - 1
        while k >= 0 and walk.chosen[k] + 1 >= walk.sizes[k]:
            k -= 1
        if k < 0:
            break
        path = [*walk.chosen[:k], walk.chosen[k] + 1]
    out = list(found.values())
    random.Random(seed).shuffle(out)
    return out


def key(params: dict[str, Any]) -> str:
    """A point's identity: its parameters and values (1e-4 and 0.0001 alike)."""
    return json.dumps(params, sort_keys=True, default=str)


def budget(n_trials: int | None, grid: list[dict[str, Any]] | None) -> tuple[int, str]:
    """`hydra.sweeper.n_trials` for this sweep, and a note when it was changed: unset (null),
    the grid's size (DEFAULT_N_TRIALS without a grid); above the grid's size, the grid's size."""
    if grid is None:
        return (DEFAULT_N_TRIALS if n_trials is None else int(n_trials)), ""
    if n_trials is None:
        return len(grid), ""
    if n_trials > len(grid):
        return len(grid), (
            f"hydra.sweeper.n_trials={n_trials} is more than the grid's {len(grid)} points: "
            f"each point runs once ({len(grid)} trials)"
        )
    return int(n_trials), ""


def _point_of(t: FrozenTrial) -> dict[str, Any] | None:
    """The point a trial runs: its fixed params (enqueued, or a retry), else its params."""
    if t.user_attrs.get(IMPORTED):
        return None
    return t.system_attrs.get("fixed_params") or dict(t.params)


def enqueue(study: optuna.Study, grid: list[dict[str, Any]]) -> int:
    """Enqueue the points the study does not hold yet (call under the study lock); returns how
    many. A point counts as held by any trial that runs it, ran it or waits to run it, whatever
    its state (a FAIL that was not retried counts against the budget like any finished trial)."""
    held = {key(p) for t in study.get_trials(deepcopy=False) if (p := _point_of(t)) is not None}
    missing = [p for p in grid if key(p) not in held]
    for params in missing:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING, system_attrs={"fixed_params": params}
            )
        )
    return len(missing)


class GridQueue(optuna.samplers.BaseSampler):
    """The sampler of `sampler=grid`: every trial's values are its grid point's fixed params,
    popped from the queue. A trial that asks it for a value is outside the grid: an error,
    never a silent random draw that repeats a point."""

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        raise RuntimeError(
            f"sampler=grid: trial {trial.number} has no grid point holding {param_name!r} "
            "(the sweeper asks only for enqueued points)"
        )


def plan(opts: Any, space: Any, quiet: bool = False) -> tuple[list[dict[str, Any]] | None, int]:
    """The grid's points (None unless `hydra.sweeper.sampler=grid`) and the sweep's n_trials,
    before any storage is opened. A note goes to stderr when n_trials was lowered (not from a
    helper worker: its main worker said it)."""
    if opts.sampler != NAME:
        return None, budget(opts.n_trials, None)[0]
    if opts.get("enqueue"):
        raise GridError(
            "hydra.sweeper.enqueue does not combine with sampler=grid: the grid runs every "
            "point once; add the known values to the searched choices instead"
        )
    grid = points(space, int(opts.seed))
    n_trials, note = budget(opts.n_trials, grid)
    if note and not quiet:
        print(f"note: {note}", file=sys.stderr)
    return grid, n_trials
