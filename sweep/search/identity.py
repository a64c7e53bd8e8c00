"""A sweep's identity: what defines it, so that re-running the same command resumes its own study
and a different command never silently takes over another sweep's.

The identity is a description of everything that shapes the trials of a sweep: the search space
as parsed (distributions and conditions), the resolved config every trial starts from (which the
fixed overrides shape; the searched keys left out, each trial sets them), the objective, and the
sampler and pruner settings. What may change between runs of one sweep is left out: `n_trials`,
`n_workers`, `n_jobs`, `timeout`, storage and tracking URIs (`tracking.*`), threads, logging and
cache / checkpoint folders, the test split (`data.test_*`), confirmation, failure and heartbeat
settings, `enqueue` (it only adds known configs).

Its digest is stored on the study when the study is created (user attrs `sweep.identity` and
`sweep.identity_doc`); the default study name carries its first 8 hex digits.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, distribution_to_json

from sweep.core.config import flatten, is_secret_key, mask_uri, resolved
from sweep.core.errors import UserError

DIGEST = "sweep.identity"
DOC = "sweep.identity_doc"

# resolved config keys (or prefixes) that may differ between runs of one sweep
VOLATILE = (
    "tracking.",
    "trainer.threads",
    "trainer.logging_every",
    "trainer.checkpoint_every",
    "trainer.checkpoint_dir",
    "data.cache_dir",
    # the test split is scored on the winner only, after the search: it shapes no trial
    "data.test_size",
    "data.test_file",
    "data.test_split",
)
# hydra.sweeper.* settings that define the search
SEARCH_SETTINGS = (
    "direction",
    "sampler",
    "seed",
    "n_startup_trials",
    "pruner",
    "pruner_startup_trials",
    "pruner_warmup_steps",
    "prune_on",
)


def _volatile(key: str) -> bool:
    return any(key == v or key.startswith(v) for v in VOLATILE)


def _searched(key: str, searched: set[str]) -> bool:
    """`scheduler.warmup_ratio` is searched when `scheduler.warmup_ratio` or the config group
    `scheduler` (whose option sets every scheduler.* key) is."""
    return any(key == s or key.startswith(f"{s}.") for s in searched)


def schema_defaults() -> dict[str, Any]:
    """The flattened defaults of the config schema (`???` where a value is required)."""
    from sweep.core.config import Config

    tree = OmegaConf.to_container(OmegaConf.structured(Config), throw_on_missing=False)
    return flatten(tree)


def _shown(key: str, value: Any) -> Any:
    """A value as the document keeps it: a secret-keyed one as a digest of itself (a change
    still changes the identity, the value never reaches the storage), URI credentials masked."""
    if value is not None and is_secret_key(key):
        return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()[:12]
    return mask_uri(value) if isinstance(value, str) else value


def describe(
    base: DictConfig,
    distributions: dict[str, BaseDistribution],
    conditions: dict[str, Any],
    settings: dict[str, Any],
    pinned: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The identity document: plain JSON-able values only.

    Config values equal to the schema's default are left out, so a key added to the schema
    later (with its default) leaves every existing sweep's identity as it was. `pinned` are the
    keys the sweep's fixed overrides set: kept even inside a searched config group
    (`scheduler.warmup_ratio=0.1` while `scheduler` is searched still shapes every trial)."""
    searched = set(distributions)
    defaults = schema_defaults()
    config = {
        k: _shown(k, v)
        for k, v in flatten(resolved(base)).items()
        if not _volatile(k)
        and k not in searched
        and (k in pinned or not _searched(k, searched))
        and (k not in defaults or defaults[k] != v)
    }
    return {
        "space": {k: json.loads(distribution_to_json(d)) for k, d in sorted(distributions.items())},
        "conditions": OmegaConf.to_container(OmegaConf.create(conditions or {})),
        "config": config,
        "sweeper": {k: settings.get(k) for k in SEARCH_SETTINGS},
    }


def digest(doc: dict[str, Any]) -> str:
    blob = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def study_name(experiment: str, full_digest: str) -> str:
    """The default study name: the experiment and the identity's first 8 hex digits."""
    return f"{experiment}-{full_digest[:8]}"


# --------------------------------------------------------------------------- differences


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _dist_text(d: dict[str, Any] | None) -> str:
    if d is None:
        return "not searched"
    a = d.get("attributes", {})
    if d.get("name") == "CategoricalDistribution":
        return "choice " + ", ".join(map(_fmt, a.get("choices", [])))
    scale = " (log)" if a.get("log") else ""
    return f"range {_fmt(a.get('low'))}..{_fmt(a.get('high'))}{scale}"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed from the `old` identity document to the `new` one, one phrase each:
    `optimizer.lr range 3e-05..0.0004 (log) -> range 1e-05..0.0001 (log)`."""
    out: list[str] = []
    old_space, new_space = old.get("space", {}), new.get("space", {})
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    for key in sorted(set(old_space) | set(new_space)):
        a, b = old_space.get(key), new_space.get(key)
        if a == b:
            continue
        if b is None:  # no longer searched: what it is fixed to now
            fixed = new_cfg.get(key, new_cfg.get(f"{key}.name"))
            out.append(f"{key} {_dist_text(a)} -> {_fmt(fixed) if fixed is not None else 'fixed'}")
        elif a is None:
            out.append(f"{key} not searched -> {_dist_text(b)}")
        else:
            out.append(f"{key} {_dist_text(a)} -> {_dist_text(b)}")
    searched = set(old_space) | set(new_space)
    defaults = schema_defaults()  # what a key left out of a document stood for
    for key in sorted(set(old_cfg) | set(new_cfg)):
        a, b = (c.get(key, defaults.get(key, "-")) for c in (old_cfg, new_cfg))
        # a key of a config group searched on one side only is the group's swap, named above
        one_sided = _searched(key, searched) and not (key in old_cfg and key in new_cfg)
        if key in searched or a == b or one_sided:
            continue
        out.append(f"{key} {_fmt(a)} -> {_fmt(b)}")
    if old.get("conditions") != new.get("conditions"):
        out.append("hydra.sweeper.conditions changed")
    old_s, new_s = old.get("sweeper", {}), new.get("sweeper", {})
    for key in SEARCH_SETTINGS:
        if old_s.get(key) != new_s.get(key):
            out.append(f"hydra.sweeper.{key} {_fmt(old_s.get(key))} -> {_fmt(new_s.get(key))}")
    return out


def summary(diffs: list[str], limit: int = 4) -> str:
    shown = "; ".join(diffs[:limit])
    more = len(diffs) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------- choosing the study


class IdentityError(UserError, ValueError):
    """A study holds another sweep than the one asked for; one line saying what differs."""


def _load_attrs(storage, name: str) -> dict[str, Any] | None:
    """The user attrs of study `name` in `storage`, or None when there is no such study."""
    import optuna

    if name not in optuna.study.get_all_study_names(storage=storage):
        return None
    return dict(optuna.load_study(study_name=name, storage=storage).user_attrs)


def _same_space(storage, name: str, distributions: dict[str, BaseDistribution]) -> bool:
    """Whether every trial of an old study (one without an identity) searched this space."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    for t in study.get_trials(deepcopy=False):
        for key, dist in t.distributions.items():
            if distributions.get(key) != dist:
                return False
    return True


def choose_study(
    storage,
    requested: str | None,
    experiment: str,
    full_digest: str,
    doc: dict[str, Any],
    distributions: dict[str, BaseDistribution],
) -> tuple[str, str | None]:
    """The study this sweep runs in, and a note to print once (or None).

    - `requested` (hydra.sweeper.study_name) names it; a study of that name made by a sweep with
      another identity is refused (IdentityError), never mixed into.
    - Otherwise the name carries the identity (`<experiment>-<8 hex>`): every distinct sweep gets
      its own study, the same command finds its own again.
    - A study from before identities (no `sweep.identity`) is resumed as before: the requested
      one, or, by default, the one named after the experiment when its trials searched this
      space. The identity is recorded on it then, so the note is said once.
    """
    if requested:
        attrs = _load_attrs(storage, requested)
        if attrs is None:
            return requested, None
        stored = attrs.get(DIGEST)
        if stored is None:
            return requested, (
                f"study {requested!r} predates sweep identities: resuming it as before; "
                "this sweep's identity is recorded on it from now on"
            )
        if stored != full_digest:
            diffs = differences(json.loads(attrs.get(DOC, "{}")), doc)
            raise IdentityError(
                f"study {requested!r} holds another sweep ({summary(diffs) or 'another identity'})"
                f"; start a new study with another hydra.sweeper.study_name (or none: the default "
                "name follows the sweep), or continue this one with its own settings"
            )
        return requested, None
    name = study_name(experiment, full_digest)
    attrs = _load_attrs(storage, name)
    if attrs is not None:
        if attrs.get(DIGEST, full_digest) != full_digest:
            raise IdentityError(
                f"study {name!r} holds a sweep with another identity (a digest collision); "
                "set hydra.sweeper.study_name"
            )
        return name, None
    legacy = _load_attrs(storage, experiment)
    if legacy is None:
        return name, None
    if DIGEST in legacy:  # an old study that an earlier run of this sweep adopted, or another
        return (experiment if legacy[DIGEST] == full_digest else name), None
    if _same_space(storage, experiment, distributions):
        return experiment, (
            f"study {experiment!r} predates sweep identities and searched this space: "
            "resuming it as before; this sweep's identity is recorded on it from now on"
        )
    return name, (
        f"study {experiment!r} (from before sweep identities) searched another space: "
        f"this sweep starts its own study {name!r}"
    )


def record(study, full_digest: str, doc: dict[str, Any]) -> None:
    """Store the identity on the study (a new one, or an old one being resumed), then check it
    (call under the study lock): a worker that raced another sweep's worker to a new study of
    the same name is refused here, before it asks for a trial."""
    if study.user_attrs.get(DIGEST) is None:
        study.set_user_attr(DOC, json.dumps(doc, sort_keys=True, default=str))
        study.set_user_attr(DIGEST, full_digest)
    attrs = study.user_attrs
    if attrs.get(DIGEST) != full_digest:
        diffs = differences(json.loads(attrs.get(DOC, "{}")), doc)
        raise IdentityError(
            f"study {study.study_name!r} holds another sweep "
            f"({summary(diffs) or 'another identity'}); use another hydra.sweeper.study_name"
        )
