"""A sweep's identity: what defines it, so that re-running the same command resumes its own study
and a different command never silently takes over another sweep's.

The identity is a description of everything that shapes the trials of a sweep: the search space
as parsed (distributions and conditions), the resolved config every trial starts from (which the
fixed overrides shape; the searched keys left out, each trial sets them), the objective, and the
sampler and pruner settings. What may change between runs of one sweep is left out: `n_trials`,
`n_workers`, `n_jobs`, `timeout`, storage and tracking URIs (`tracking.*`), threads, logging and
cache / checkpoint folders, the test split (`data.test_*`), confirmation, failure and heartbeat
settings, `enqueue` (it only adds known configs). A warm start's source (`warm_start`) and the
constraints are part of it: a warm-started or constrained sweep is another study than the same
command run cold or unconstrained.

Every value is recorded, the schema's defaults included (document version 2): a default that
changes between versions changes the trials, so it changes the identity, and the same command
under the new default starts its own study instead of resuming one whose trials ran under the
old default. Documents without a version (made before) left every value equal to the schema
default out; a study holding one is still found and resumed by the same command, read the old
way, and its identity is then recorded in full.

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
# the document's `version`: 2 records every value; none (1) left values equal to the schema
# default out, so a changed default went unseen and a resumed study mixed trials of both
VERSION = 2

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
    # refused in a sweep's trials (sweep/search/refit.py): never true in a search, so left out,
    # and the identities of sweeps made before the key existed stay the same
    "data.train_on_validation",
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
    "warm_start",  # the study a warm start imports from (sweep/search/warm.py)
    "constraints",  # bounds that make a trial infeasible (sweep/search/front.py)
)
# settings recorded only when set: a sweep that leaves them unset keeps the identity (and so the
# study) it had before they existed
SET_ONLY = ("warm_start", "constraints")


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

    Every config value that shapes a trial is kept, defaults included: a default that changes
    between versions changes the trials (a key added to the schema changes every identity too,
    as its default may change what a trial does). `pinned` are the keys the sweep's fixed
    overrides set: kept even inside a searched config group (`scheduler.warmup_ratio=0.1` while
    `scheduler` is searched still shapes every trial)."""
    searched = set(distributions)
    config = {
        k: _shown(k, v)
        for k, v in flatten(resolved(base)).items()
        if not _volatile(k) and k not in searched and (k in pinned or not _searched(k, searched))
    }
    return {
        "version": VERSION,
        "space": {k: json.loads(distribution_to_json(d)) for k, d in sorted(distributions.items())},
        "conditions": OmegaConf.to_container(OmegaConf.create(conditions or {})),
        "config": config,
        "sweeper": {
            k: settings.get(k)
            for k in SEARCH_SETTINGS
            if k not in SET_ONLY or settings.get(k) is not None
        },
    }


def legacy(doc: dict[str, Any]) -> dict[str, Any]:
    """The document the scheme before version 2 made of the same sweep: no version, and every
    config value equal to this version's schema default left out. (That scheme compared the
    values before masking; as shown they compare the same but for URIs that differ only in
    masked credentials, which can only miss an old study, never mix two.)"""
    defaults = schema_defaults()
    config = {
        k: v
        for k, v in doc.get("config", {}).items()
        if k not in defaults or _shown(k, defaults[k]) != v
    }
    return {**{k: v for k, v in doc.items() if k != "version"}, "config": config}


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
    defaults = schema_defaults()
    for key in sorted(set(old_cfg) | set(new_cfg)):
        a, b = (_value(d, key, defaults) for d in (old, new))
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


def _value(doc: dict[str, Any], key: str, defaults: dict[str, Any]) -> Any:
    """A config value of a document, `-` where it has none: a document of version 2 holds every
    key of its schema; one from before left defaults out, read here as this version's."""
    config = doc.get("config", {})
    if key in config or doc.get("version"):
        return config.get(key, "-")
    return _shown(key, defaults[key]) if key in defaults else "-"


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


def _stored_doc(attrs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(attrs.get(DOC) or "{}")


def _match(attrs: dict[str, Any], full_digest: str, doc: dict[str, Any]) -> str | None:
    """How a study's stored identity matches this sweep: `same`; `old` when the scheme before
    version 2 recorded it and it is this sweep read that way (the same command resumes what it
    made then); else None."""
    stored = attrs.get(DIGEST)
    if stored == full_digest:
        return "same"
    if "version" not in _stored_doc(attrs) and stored == digest(legacy(doc)):
        return "old"
    return None


def _old_note(name: str) -> str:
    return (
        f"study {name!r} was made by a version that left default values out of its identity: "
        "resuming it as before (the values it left out are taken to be this version's "
        "defaults); its identity records every value from now on"
    )


def _same_space(storage, name: str, distributions: dict[str, BaseDistribution]) -> bool:
    """Whether every trial of an old study (one without an identity) searched this space."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    for t in study.get_trials(deepcopy=False):
        for key, dist in t.distributions.items():
            if distributions.get(key) != dist:
                return False
    return True


def _at_defaults_only(old: dict[str, Any], doc: dict[str, Any]) -> bool:
    """Whether a stored document (version 2) differs from this sweep's only in config keys that
    this sweep has at this version's schema defaults (or that one side has no longer / not yet):
    the same command, run where the defaults were other."""
    if any(old.get(k) != doc.get(k) for k in ("space", "conditions", "sweeper")):
        return False
    old_cfg, new_cfg, defaults = old.get("config", {}), doc.get("config", {}), schema_defaults()
    changed = [k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k, ()) != new_cfg.get(k, ())]
    return bool(changed) and all(
        k not in old_cfg or k not in new_cfg or _shown(k, defaults.get(k, ())) == new_cfg[k]
        for k in changed
    )


def _new_study(storage, experiment: str, name: str, doc: dict[str, Any]) -> tuple[str, str | None]:
    """A new study `name`, with a note naming the newest study of the experiment that holds
    this command under other defaults: starting afresh then is right (its trials ran under the
    other values), but without the note it would look like a lost sweep."""
    import optuna

    plain = json.loads(json.dumps(doc, default=str))  # compared as stored
    near = None
    for s in optuna.get_all_study_summaries(storage=storage, include_best_trial=False):
        old = _stored_doc(s.user_attrs)
        if s.study_name.startswith(f"{experiment}-") and old.get("version") == VERSION:
            near = (s.study_name, old) if _at_defaults_only(old, plain) else near
    if near is None:
        return name, None
    return name, (
        f"study {near[0]!r} differs from this sweep only in keys this version has at their "
        f"defaults ({summary(differences(near[1], plain))}): this sweep starts its own study "
        f"{name!r} rather than mix its trials into that one's"
    )


def _requested(storage, requested: str, full_digest: str, doc: dict[str, Any]):
    """The study hydra.sweeper.study_name names: new, resumed, or refused (IdentityError)."""
    attrs = _load_attrs(storage, requested)
    if attrs is None:
        return requested, None
    if attrs.get(DIGEST) is None:
        return requested, (
            f"study {requested!r} predates sweep identities: resuming it as before; "
            "this sweep's identity is recorded on it from now on"
        )
    match = _match(attrs, full_digest, doc)
    if match is None:
        diffs = differences(_stored_doc(attrs), doc)
        raise IdentityError(
            f"study {requested!r} holds another sweep ({summary(diffs) or 'another identity'})"
            f"; start a new study with another hydra.sweeper.study_name (or none: the default "
            "name follows the sweep), or continue this one with its own settings"
        )
    return requested, (_old_note(requested) if match == "old" else None)


def _by_identity(storage, experiment: str, full_digest: str, doc: dict[str, Any]):
    """The study named after this sweep's identity, or after its identity as the scheme before
    version 2 read it; None when neither holds this sweep."""
    name = study_name(experiment, full_digest)
    attrs = _load_attrs(storage, name)
    if attrs is not None:
        if attrs.get(DIGEST, full_digest) != full_digest:
            raise IdentityError(
                f"study {name!r} holds a sweep with another identity (a digest collision); "
                "set hydra.sweeper.study_name"
            )
        return name, None
    old_name = study_name(experiment, digest(legacy(doc)))
    attrs = _load_attrs(storage, old_name)
    match = _match(attrs, full_digest, doc) if attrs is not None else None
    if match is None:
        return None
    return old_name, (_old_note(old_name) if match == "old" else None)


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
      its own study, the same command finds its own again (one named after its identity as the
      scheme before version 2 read it included: resumed, with a note said once).
    - A study from before identities (no `sweep.identity`) is resumed as before: the requested
      one, or, by default, the one named after the experiment when its trials searched this
      space. The identity is recorded on it then, so the note is said once.
    """
    if requested:
        return _requested(storage, requested, full_digest, doc)
    found = _by_identity(storage, experiment, full_digest, doc)
    if found is not None:
        return found
    name = study_name(experiment, full_digest)
    legacy_attrs = _load_attrs(storage, experiment)
    if legacy_attrs is None:
        return _new_study(storage, experiment, name, doc)
    if DIGEST in legacy_attrs:  # an old study that an earlier run of this sweep adopted, or another
        match = _match(legacy_attrs, full_digest, doc)
        if match is None:
            return _new_study(storage, experiment, name, doc)
        return experiment, (_old_note(experiment) if match == "old" else None)
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
    the same name is refused here, before it asks for a trial. A study whose identity the
    scheme before version 2 recorded, and which holds this sweep read that way, gets this
    sweep's full identity: from now on a changed default is seen there too."""
    attrs = study.user_attrs
    if attrs.get(DIGEST) is None:
        study.set_user_attr(DOC, json.dumps(doc, sort_keys=True, default=str))
        study.set_user_attr(DIGEST, full_digest)
    elif _match(attrs, full_digest, doc) == "old":
        # the digest first: a worker of this sweep reading meanwhile finds its own identity
        study.set_user_attr(DIGEST, full_digest)
        study.set_user_attr(DOC, json.dumps(doc, sort_keys=True, default=str))
    attrs = study.user_attrs
    if attrs.get(DIGEST) != full_digest:
        diffs = differences(_stored_doc(attrs), doc)
        raise IdentityError(
            f"study {study.study_name!r} holds another sweep "
            f"({summary(diffs) or 'another identity'}); use another hydra.sweeper.study_name"
        )
