"""`hydra.sweeper.warm_start`: begin a sweep with the finished trials of an earlier one.

Spelling: `hydra.sweeper.warm_start=<study>` names a study in this sweep's own storage;
`'hydra.sweeper.warm_start="<storage url>#<study>"'` one in another storage (Hydra's grammar
needs the quotes around a value holding `#`). The storage must exist: a warm start never creates
one.

What is imported: the source's COMPLETE and PRUNED trials (FAIL and unfinished ones say nothing
about a point) whose point lies in this sweep's search space, with their values (one or several
objectives) and intermediate values, through Optuna's own `create_trial` / `study.add_trials`.
Each carries the trial user attributes IMPORTED (`sweep.imported_from` = the source study's name),
SOURCE_NUMBER (its number there) and SOURCE_RUN (its MLflow run id there, when it had one), and
the source trial's other user attributes except its own run id (`mlflow_run_id`): an imported
trial ran in another sweep, so nothing of this sweep (the optuna.best tag, confirmation, the
winner) may take it for one of its runs. The sampler and the pruner see imported trials like any
other: that is the point of a warm start. The budget does not: `n_trials`, the failure rate and
the progress count only this sweep's own trials (study.counted), so a warm sweep runs exactly as
many trials as a cold one; and "the best trial", the Pareto front and confirmation are chosen
among this sweep's own trials only (front.candidates), so an imported result is never confirmed or
registered without being trained again here.

The rule for "its point lies in the new space" (`_point`), a trial at a time:
- every parameter the new space samples for this trial (its conditions evaluated on the trial's
  own values, as `SearchSpace.suggest` does) must be one the trial has, with a value contained in
  the new distribution (Optuna's `to_internal_repr` + `_contains`: a choice's value among the new
  choices, a number inside the new range and on its step, a log range's value positive);
- a parameter the new space samples and the trial lacks is taken from the source sweep's fixed
  config (its identity document), so a newly searched key whose old fixed value lies in the new
  range keeps its trials (`optimizer.weight_decay=choice(0.0,0.01)` over a sweep that ran at 0.0);
  no recorded value: the trial is not importable;
- a conditional parameter that is inactive for the trial under the new conditions is not needed;
- a parameter of the trial that the new space does not sample must equal the value this sweep
  fixes for it (its command line, `params` or composed config): a trial that ran with another
  schedule than the one this sweep pins is another configuration.

Refused in one line (WarmStartError, exit 2), before the new study is made and before any trial:
a bad `<storage>#<study>` spelling, a storage or study that does not exist, this sweep's own
study, a source that optimises another number of objectives or in other directions, or another
objective metric (from its identity), and a source with no importable trial. A source that pruned
on another metric (`prune_on`) gives intermediate values of another scale: its COMPLETE trials are
imported without them and its PRUNED trials are left out, with a note. Differences of the fixed
config (another epoch count, ...) are named in a note; the values are imported as they are.

Once per study: the import runs under the study lock right after the study is made or loaded,
records DONE on the study, and a study that has DONE imports nothing again (a re-run, another
worker, another machine). A first run killed during the import is completed by the next one: a
source trial already present (by source and number) is not added twice. The identity of the new
study records the source (identity.SEARCH_SETTINGS `warm_start`), so a warm-started sweep is
another study than the same command run cold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from sweep.core.config import mask_uri
from sweep.core.errors import UserError
from sweep.search import grid, identity
from sweep.search import study as study_mod

IMPORTED = grid.IMPORTED  # "sweep.imported_from": the source study's name
SOURCE_NUMBER = "sweep.imported_number"  # the trial's number in the source study
SOURCE_RUN = "sweep.imported_run_id"  # its MLflow run id there, when it had one
DONE = "sweep.warm_started"  # study user attr: the import ran (JSON: source, count)
# user attrs that refer to the source sweep's own bookkeeping: never copied as they are
_NOT_COPIED = (study_mod.RUN_ID,)
_CONSTRAINT_ATTRS = ("sweep.constraints", "sweep.feasible")  # front.CONSTRAINTS, front.FEASIBLE


class WarmStartError(UserError, ValueError):
    """`hydra.sweeper.warm_start` cannot be used; one line saying why."""


@dataclass(frozen=True)
class Source:
    """The study a warm start reads: `storage_url` None is the sweep's own storage."""

    study: str
    storage_url: str | None = None

    def spelled(self) -> str:
        """As the identity and the messages show it (credentials masked)."""
        return (
            self.study if self.storage_url is None else f"{mask_uri(self.storage_url)}#{self.study}"
        )


@dataclass
class Plan:
    """The trials to add, and what to say about the rest."""

    source: Source
    trials: list[FrozenTrial] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _storage_url(url: str) -> bool:
    return study_mod.journal_path(url) is not None or url.startswith(
        ("sqlite:///", "postgresql", "mysql")
    )


def parse(setting: Any, storage_url: str) -> Source | None:
    """`hydra.sweeper.warm_start` as a Source (None when unset), before any storage is opened."""
    if setting is None or str(setting).strip() == "":
        return None
    text = str(setting).strip()
    hint = (
        "give a study name, or a storage URL and a study joined by # in quotes, e.g. "
        "'hydra.sweeper.warm_start=\"sqlite:///old.db#my-study\"'"
    )
    if "#" not in text:
        if "://" in text:
            raise WarmStartError(
                f"hydra.sweeper.warm_start={mask_uri(text)} names a storage but no study: {hint}"
            )
        return Source(text)
    url, _, name = text.rpartition("#")
    if not url or not name.strip() or not _storage_url(url):
        raise WarmStartError(
            f"hydra.sweeper.warm_start={mask_uri(text)} is not <storage url>#<study>: {hint}"
        )
    return Source(name.strip(), None if url == storage_url else url)


def _open_source(source: Source, storage):
    """The source's storage: this sweep's own, or an existing other one (never created)."""
    if source.storage_url is None:
        return storage
    url = source.storage_url
    path = study_mod.journal_path(url)
    if path is None and url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
    if path is not None and not path.is_file():
        raise WarmStartError(
            f"hydra.sweeper.warm_start={source.spelled()}: no Optuna storage at {path}"
        )
    return study_mod.open_storage(url)


def _load(source: Source, storage, own_study: str) -> optuna.Study:
    if source.storage_url is None and source.study == own_study:
        raise WarmStartError(
            f"hydra.sweeper.warm_start={source.study} names this sweep's own study: "
            "name the earlier sweep's study"
        )
    opened = _open_source(source, storage)
    names = optuna.study.get_all_study_names(storage=opened)
    if source.study not in names:
        where = "this sweep's storage" if source.storage_url is None else "that storage"
        known = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise WarmStartError(
            f"hydra.sweeper.warm_start={source.spelled()}: no study {source.study!r} in {where}"
            + (f" (its studies: {known})" if names else " (it holds no study)")
        )
    return optuna.load_study(study_name=source.study, storage=opened)


def _doc(study: optuna.Study) -> dict[str, Any]:
    return json.loads(study.user_attrs.get(identity.DOC) or "{}")


def _check_goal(src: optuna.Study, source: Source, directions: list[str], doc: dict) -> None:
    """The source must optimise the same objective(s) in the same direction(s)."""
    theirs = [d.name.lower() for d in src.directions]
    if theirs != directions:
        raise WarmStartError(
            f"hydra.sweeper.warm_start={source.spelled()}: that study optimises "
            f"{','.join(theirs)}, this sweep {','.join(directions)}: its values cannot be "
            "compared with this sweep's"
        )
    mine = doc.get("config", {}).get("trainer.objective")
    old = _doc(src).get("config", {}).get("trainer.objective")
    if mine is not None and old is not None and old != mine:
        raise WarmStartError(
            f"hydra.sweeper.warm_start={source.spelled()}: that study's objective is {old}, "
            f"this sweep's {mine}: its values cannot be compared with this sweep's"
        )


def _same(a: Any, b: Any) -> bool:
    """Two config values alike (1e-4 and 0.0001, 0 and 0.0)."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    if numbers:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def _config_value(config: dict[str, Any], key: str) -> Any:
    """A key's value in an identity document's config; a config group's by its `.name`."""
    return config.get(key, config.get(f"{key}.name", _MISSING))


_MISSING = object()


class _Outside(Exception):
    """The trial's point does not lie in the new space."""


class _Replay:
    """Stands in for an Optuna trial while `SearchSpace.suggest` runs: each value asked for is
    the source trial's own (or its sweep's fixed one), if the new distribution contains it."""

    def __init__(self, params: dict[str, Any], fixed: dict[str, Any]):
        self.params = params
        self.fixed = fixed

    def _take(self, name: str, dist: BaseDistribution) -> Any:
        value = self.params.get(name, _config_value(self.fixed, name))
        if value is _MISSING:
            raise _Outside(name)
        try:
            internal = dist.to_internal_repr(value)
            inside = dist._contains(internal)
        except (ValueError, TypeError):
            inside = False
        if not inside:
            raise _Outside(name)
        return dist.to_external_repr(internal)

    def suggest_categorical(self, name: str, choices) -> Any:
        return self._take(name, CategoricalDistribution(choices))

    def suggest_int(self, name: str, low: int, high: int, log: bool = False, step: int = 1):
        return self._take(name, IntDistribution(low, high, log=log, step=step))

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, step=None):
        return self._take(name, FloatDistribution(low, high, log=log, step=step))


def _pinned(space: Any, doc: dict[str, Any], key: str) -> Any:
    """The value this sweep fixes for a key it does not sample (_MISSING when unknown)."""
    for values in (space.given, space.fixed):
        if key in values:
            return values[key]
    return _config_value(doc.get("config", {}), key)


def _point(t: FrozenTrial, space: Any, src_fixed: dict, doc: dict) -> dict[str, Any] | None:
    """The trial's params in the new space, or None when its point lies outside it (the rule is
    in the module's docstring)."""
    try:
        values = space.suggest(_Replay(dict(t.params), src_fixed))
    except _Outside:
        return None
    for key, value in t.params.items():
        if key in values:
            continue
        pinned = _pinned(space, doc, key)
        if pinned is _MISSING or not _same(value, pinned):
            return None
    return values


def _attrs(t: FrozenTrial, source: Source, keep_constraints: bool) -> dict[str, Any]:
    attrs = {k: v for k, v in t.user_attrs.items() if k not in _NOT_COPIED}
    if not keep_constraints:
        attrs = {k: v for k, v in attrs.items() if k not in _CONSTRAINT_ATTRS}
    attrs[IMPORTED] = source.study
    attrs[SOURCE_NUMBER] = t.number
    if t.user_attrs.get(study_mod.RUN_ID):
        attrs[SOURCE_RUN] = t.user_attrs[study_mod.RUN_ID]
    return attrs


def _copy(
    t: FrozenTrial, params: dict, space: Any, source: Source, same_scale: bool, same_bounds: bool
) -> FrozenTrial:
    """The imported copy of source trial `t` with its point `params` in the new space."""
    return optuna.trial.create_trial(
        state=t.state,
        values=list(t.values) if t.values is not None else None,
        params=params,
        distributions={k: space.distributions[k] for k in params},
        user_attrs=_attrs(t, source, same_bounds),
        intermediate_values=dict(t.intermediate_values) if same_scale else None,
    )


def _differences(src_doc: dict, doc: dict) -> list[str]:
    """The fixed config keys both sweeps record with other values."""
    old, new = src_doc.get("config", {}), doc.get("config", {})
    return [
        f"{k} {old[k]} -> {new[k]}"
        for k in sorted(set(old) & set(new))
        if k != "trainer.objective" and not _same(old[k], new[k])
    ]


def plan(
    setting: Source | None,
    storage,
    own_study: str,
    space: Any,
    directions: list[str],
    doc: dict[str, Any],
) -> Plan | None:
    """The source's importable trials for a new study; None when there is no warm start or
    `own_study` has had its import. Raises WarmStartError (one line) for bad input."""
    if setting is None or _started(storage, own_study):
        return None
    src = _load(setting, storage, own_study)
    _check_goal(src, setting, directions, doc)
    src_doc = _doc(src)
    # a source without an identity (made before identities) records neither: taken as alike
    old, new = src_doc.get("sweeper", {}), doc.get("sweeper", {})
    same_scale = old.get("prune_on", new.get("prune_on")) == new.get("prune_on")
    same_bounds = old.get("constraints", new.get("constraints")) == new.get("constraints")
    finished = src.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    out = Plan(setting)
    for t in finished:
        if t.state == TrialState.PRUNED and not same_scale:
            continue
        params = _point(t, space, src_doc.get("config", {}), doc)
        if params is not None:
            out.trials.append(_copy(t, params, space, setting, same_scale, same_bounds))
    _explain(out, src, len(finished), same_scale, _differences(src_doc, doc))
    return out


def _explain(out: Plan, src: optuna.Study, n_finished: int, same_scale: bool, diffs) -> None:
    """Refuse a source with nothing to import; else the notes to print."""
    name = out.source.spelled()
    if not out.trials:
        what = (
            "has no finished trial"
            if not n_finished
            else f"has no finished trial (of {n_finished}) whose params lie in this search space"
        )
        raise WarmStartError(f"hydra.sweeper.warm_start={name}: study {src.study_name!r} {what}")
    out.notes.append(
        f"warm start: {len(out.trials)} of {n_finished} finished trials of study "
        f"{src.study_name!r} lie in this search space and are imported (not counted in n_trials)"
    )
    if not same_scale:
        out.notes.append(
            f"warm start: {name} pruned on another metric (hydra.sweeper.prune_on): its "
            "intermediate values and its pruned trials are left out"
        )
    if diffs:
        out.notes.append(
            f"warm start: {name} ran with other fixed settings ({identity.summary(diffs)}); "
            "its values are imported as they are"
        )


def _started(storage, name: str) -> bool:
    """Whether study `name` exists and has had its import."""
    if name not in optuna.study.get_all_study_names(storage=storage):
        return False
    return DONE in optuna.load_study(study_name=name, storage=storage).user_attrs


def apply(study: optuna.Study, todo: Plan | None) -> int:
    """Add the planned trials that the study does not hold yet, once per study; call under the
    study lock. Returns how many were added."""
    if todo is None or DONE in study.user_attrs:
        return 0
    held = {
        (t.user_attrs.get(IMPORTED), t.user_attrs.get(SOURCE_NUMBER))
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(IMPORTED)
    }
    new = [
        t for t in todo.trials if (t.user_attrs[IMPORTED], t.user_attrs[SOURCE_NUMBER]) not in held
    ]
    study.add_trials(new)
    study.set_user_attr(
        DONE, json.dumps({"from": todo.source.spelled(), "imported": len(todo.trials)})
    )
    return len(new)
