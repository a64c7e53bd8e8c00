"""Re-run a logged trial from MLflow alone, and find a sweep's best trial.

    python -m sweep reproduce RUN_ID
    python -m sweep reproduce --best --experiment NAME
    python -m sweep best --experiment NAME

`reproduce` reads the run's `config.yaml` artifact (the fully resolved config, secrets masked),
warns about every difference between the environment the run logged and this one (package
versions, python, git commit and dirty flag, data fingerprint), fills masked values from `--set` or
the environment, re-runs training with exactly that config as a new top-level run tagged
`reproduces=<run id>`, and compares the final eval metrics.

A logged config is untrusted input: it is parsed with `yaml.safe_load` (no aliases, no Hydra
`_target_`-style keys, no OmegaConf interpolations), merged onto the typed schema (unknown keys and
wrong types are refused) and validated before anything runs.

This module stays light at import (no mlflow, torch or transformers until they are needed).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from omegaconf import DictConfig, OmegaConf

from sweep.core import metrics
from sweep.core import tree as walk
from sweep.core.config import MASK, Config, is_secret_key, mask_uri, validate
from sweep.core.errors import UserError
from sweep.track.tracking import artifact_root, check_reachable, resolve_uri, sqlite_path

# Hydra's instantiation keys: the project never instantiates anything from a trial's config
FORBIDDEN_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
MAX_CONFIG_BYTES = 1_000_000
CONFIG_ARTIFACT = "config.yaml"


class ReproduceError(UserError, ValueError):
    """Bad input to `reproduce` / `best` (a run, an experiment, a config); one line."""


class MismatchError(RuntimeError):
    """The reproduced metrics differ from the logged ones beyond the tolerance (exit 1)."""


Printer = Callable[[str], None]


def _out(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the logged config


def find_forbidden(node: Any, prefix: str = "") -> list[str]:
    """Key paths of Hydra instantiation keys anywhere in a plain tree."""
    return [p for p, k in walk.keys(node, prefix) if str(k) in FORBIDDEN_KEYS]


def _find_interpolations(node: Any, prefix: str = "") -> list[str]:
    """Paths of the string leaves holding an OmegaConf interpolation (`${...}`)."""
    return [p for p, v in walk.leaves(node, prefix) if isinstance(v, str) and "${" in v]


def parse_config_text(text: str) -> dict[str, Any]:
    """The logged config as a plain dict, refusing what a resolved config never holds."""
    if len(text.encode("utf-8", "replace")) > MAX_CONFIG_BYTES:
        raise ReproduceError(
            f"the logged {CONFIG_ARTIFACT} is larger than {MAX_CONFIG_BYTES} bytes"
        )
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ReproduceError(
                    f"the logged {CONFIG_ARTIFACT} uses a YAML alias (*{event.anchor}); "
                    "a resolved config never does: refused"
                )
        tree = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise ReproduceError(f"the logged {CONFIG_ARTIFACT} is not valid YAML ({first})") from None
    if not isinstance(tree, dict):
        raise ReproduceError(f"the logged {CONFIG_ARTIFACT} is not a mapping of config groups")
    bad = find_forbidden(tree)
    if bad:
        raise ReproduceError(
            f"the logged {CONFIG_ARTIFACT} holds {', '.join(bad)}: instantiation keys "
            f"({', '.join(FORBIDDEN_KEYS)}) are refused, nothing was run"
        )
    interp = _find_interpolations(tree)
    if interp:
        raise ReproduceError(
            f"the logged {CONFIG_ARTIFACT} holds an interpolation ('${{...}}') at "
            f"{', '.join(interp)}; a resolved config never does: refused, nothing was run"
        )
    return tree


def to_config(tree: dict[str, Any]) -> DictConfig:
    """Merge a plain tree onto the typed schema: unknown keys and wrong types are refused."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(tree))
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        key = getattr(e, "full_key", None)
        where = f" (key {key})" if key else ""
        raise ReproduceError(f"the logged config does not fit the schema: {first}{where}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ReproduceError(f"the logged config lacks required keys: {', '.join(missing)}")
    return cfg  # type: ignore[return-value]


# --------------------------------------------------------------------------- masked values


def _is_masked_uri(value: Any) -> bool:
    return isinstance(value, str) and f":{MASK}@" in value and "://" in value


def masked_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value was masked when logged (a secret key, or a URI's password)."""
    return [p for p, v in walk.leaves(node, prefix) if v == MASK or _is_masked_uri(v)]


def env_var_for(key: str) -> str:
    """`a.b.hf_token` -> `HF_TOKEN`: the last key segment, upper-cased."""
    return key.rsplit(".", 1)[-1].replace("-", "_").upper()


def _fill_one(logged: Any, given: str) -> str:
    """A secret is replaced; a URI whose password was masked takes either a whole URI or just
    the password (inserted URL-quoted where `***` stood)."""
    if _is_masked_uri(logged) and "://" not in given:
        return logged.replace(f":{MASK}@", f":{quote(given, safe='')}@", 1)
    return given


def _get(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


def _set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def fill_masked(
    tree: dict[str, Any],
    sets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Fill the values masked at logging time. A masked key `a.b.hf_token` takes `--set
    a.b.hf_token=VALUE`, else $HF_TOKEN, else this fails naming the key and both ways.

    Returns the filled copy and one note per filled key saying where its value came from."""
    import copy

    sets = dict(sets or {})
    env = os.environ if env is None else env
    out = copy.deepcopy(tree)
    masked = masked_keys(out)
    for key in sets:
        if key not in masked:
            raise ReproduceError(
                f"--set {key}: that key was not masked in the logged config; reproduce re-runs "
                "the logged values and only fills masked ones"
                + (f" (masked: {', '.join(masked)})" if masked else "")
            )
    notes: list[str] = []
    for key in masked:
        var = env_var_for(key)
        if key in sets:
            value, source = sets[key], f"--set {key}=..."
        elif env.get(var):
            value, source = env[var], f"${var}"
        else:
            what = "a URI credential" if _is_masked_uri(_get(out, key)) else "a secret"
            raise ReproduceError(
                f"{key} holds {what} masked when logged ({MASK}); "
                f"pass --set {key}=VALUE or set the environment variable {var}"
            )
        _set(out, key, _fill_one(_get(out, key), value))
        notes.append(f"{key}: masked value filled from {source}")
    return out, notes


# --------------------------------------------------------------------------- environment drift


def environment_drift(logged: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """One line per difference between the logged run's environment tags and this one's."""
    lines: list[str] = []
    prefix = "sweep.version."
    pkgs = sorted({k[len(prefix) :] for k in (*logged, *current) if k.startswith(prefix)})
    for pkg in pkgs:
        a, b = logged.get(prefix + pkg), current.get(prefix + pkg)
        if a is not None and a != b:
            lines.append(f"{pkg} {a} -> {b or '(not installed)'}")
    a, b = logged.get("sweep.python"), current.get("sweep.python")
    if a and a != b:
        lines.append(f"python {a} -> {b}")
    a, b = logged.get("sweep.git_commit"), current.get("sweep.git_commit")
    if a and a != b:
        lines.append(f"git commit {a} -> {b or '(no git checkout)'}")
    a, b = logged.get("sweep.git_dirty"), current.get("sweep.git_dirty")
    if a and b and a != b:
        lines.append(f"git dirty {a} -> {b}")
    return lines


def logged_digests(run) -> list[tuple[str, str]]:
    """(split, digest) of each of the run's MLflow dataset inputs (the Dataset column; the split
    is the input's tag mlflow.data.context)."""
    out = []
    inputs = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
    for i in inputs:
        split = next((t.value for t in i.tags if t.key == "mlflow.data.context"), None)
        if split:
            out.append((split, i.dataset.digest))
    return sorted(out)


def data_drift(logged: str | None, current: str | None) -> str | None:
    if logged and current and logged != current:
        return f"data fingerprint changed ({logged} -> {current})"
    return None


# --------------------------------------------------------------------------- MLflow look-ups


def open_store(uri: str, timeout: float = 5.0):
    """Check the store up front (seconds, not MLflow's minutes), then an MlflowClient on it.
    A SQLite store that does not exist is an error, not a reason to create an empty one."""
    from sweep.track.tracking import TrackingError

    try:
        check_reachable(uri, timeout)
    except TrackingError as e:  # the sweep CLI spells the option --tracking-uri
        raise TrackingError(str(e).replace("tracking.uri=...", "--tracking-uri URI")) from None
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise ReproduceError(f"MLflow store {uri}: no database file {db}")
    from sweep.track import tracking

    return tracking.client(uri)


def get_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ReproduceError(f"no MLflow run {run_id!r} in {mask_uri(uri)}") from None
    if run.info.lifecycle_stage == "deleted":
        raise ReproduceError(f"MLflow run {run_id!r} in {mask_uri(uri)} is deleted")
    return run


def get_experiment(client, name: str, uri: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        raise ReproduceError(f"no MLflow experiment {name!r} in {mask_uri(uri)}")
    return exp


def objective_value(run, objective: str) -> float | None:
    """The trial's objective: tag `sweep.objective.<metric>` (right also with
    trainer.objective_at=best), else the metric's last logged value."""
    tag = run.data.tags.get(f"sweep.objective.{objective}")
    try:
        if tag is not None:
            return float(tag)
    except ValueError:
        pass
    return run.data.metrics.get(objective)


@dataclass
class Best:
    run: Any
    objective: str
    direction: str
    value: float | None
    parent: Any = None
    how: str = "optuna.best"
    notes: list[str] = field(default_factory=list)


def best_run(client, experiment: str, uri: str, study: str | None = None) -> Best:
    """The run tagged optuna.best=true (the most recent one if several studies share the
    experiment, or the one of `study`), else the finished COMPLETE trial with the best value of
    its objective."""
    exp = get_experiment(client, experiment, uri)
    ids = [exp.experiment_id]
    best = _flagged_best(client, ids, experiment, study)
    if best is not None:
        return best
    if study:
        raise ReproduceError(
            f"study {study!r} of experiment {experiment!r} has no run tagged optuna.best=true "
            f"(in {mask_uri(uri)})"
        )
    return _best_by_value(client, ids, experiment, uri)


def _flagged_best(client, ids: list[str], experiment: str, study: str | None) -> Best | None:
    """The most recent active run tagged optuna.best=true (of `study` if given), or None."""
    of_study = f" and tags.`optuna.study` = '{study}'" if study else ""
    flagged = client.search_runs(
        ids,
        filter_string="tags.`optuna.best` = 'true'" + of_study,
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    flagged = [r for r in flagged if r.info.lifecycle_stage == "active"]
    if not flagged:
        return None
    run = flagged[0]
    parent = _parent(client, run)
    # the sweep ranks by sweeper.objective (with several objectives, the winner's)
    ranked_by = parent.data.params.get("sweeper.objective") if parent else None
    objective = ranked_by or run.data.tags.get("sweep.objective", "eval_f1")
    logged = parent.data.params.get("sweeper.direction") if parent else None
    direction = logged or metrics.direction(objective)
    best = Best(run, objective, direction, objective_value(run, objective), parent)
    if len(flagged) > 1:
        best.notes.append(
            f"{len(flagged)} runs of experiment {experiment!r} are tagged optuna.best=true "
            "(several studies): taking the most recent (choose one with --study)"
        )
    return best


def _best_by_value(client, ids: list[str], experiment: str, uri: str) -> Best:
    """The finished COMPLETE trial with the best objective value, when no run is flagged. The
    objective is the newest candidate's; trials of another objective are not comparable."""
    finished = client.search_runs(
        ids,
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=5000,
    )
    candidates = [
        r
        for r in finished
        if r.data.tags.get("sweep.role") not in ("parent", "confirm")
        and "reproduces" not in r.data.tags
        and r.data.tags.get("optuna.state", "COMPLETE") == "COMPLETE"
        and metrics.finite(objective_value(r, r.data.tags.get("sweep.objective", "eval_f1")))
    ]
    if not candidates:
        raise ReproduceError(
            f"experiment {experiment!r} has no finished trial with a final metric "
            f"(in {mask_uri(uri)})"
        )
    objective = candidates[0].data.tags.get("sweep.objective", "eval_f1")
    candidates = [
        r for r in candidates if r.data.tags.get("sweep.objective", "eval_f1") == objective
    ]
    direction = metrics.direction(objective)
    pick = metrics.pick(direction)
    run = pick(candidates, key=lambda r: objective_value(r, objective))
    return Best(
        run,
        objective,
        direction,
        objective_value(run, objective),
        _parent(client, run),
        how=f"no run is tagged optuna.best=true: best finished COMPLETE trial by {objective}",
    )


def _parent(client, run):
    pid = run.data.tags.get("mlflow.parentRunId")
    if not pid:
        return None
    try:
        return client.get_run(pid)
    except Exception:  # noqa: BLE001 - a deleted parent only costs the search space
        return None


def _local_artifact_dir(artifact_uri: str, uri: str) -> Path | None:
    """The run's artifact folder on this machine, if local. When a SQLite store was moved
    together with its `mlartifacts/`, the logged absolute path is gone but the same suffix
    under `<dir of the db>/mlartifacts/` exists: use that."""
    path = artifact_uri
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        return None
    p = Path(path)
    if p.is_dir():
        return p
    root = artifact_root(uri)
    marker = "/mlartifacts/"
    if root and marker in path:
        moved = Path(root) / path.split(marker, 1)[1]
        if moved.is_dir():
            return moved
    return None


def read_config_artifact(client, run, uri: str) -> str:
    run_id = run.info.run_id
    missing = ReproduceError(
        f"run {run_id} has no {CONFIG_ARTIFACT} artifact: it was not logged by `python train.py`, "
        "so it cannot be reproduced"
    )
    local = _local_artifact_dir(run.info.artifact_uri or "", uri)
    if local is not None:
        f = local / CONFIG_ARTIFACT
        if not f.is_file():
            raise missing
        return f.read_text(encoding="utf-8")
    try:
        names = {a.path for a in client.list_artifacts(run_id)}
    except Exception as e:  # noqa: BLE001 - unreadable artifact store
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ReproduceError(f"cannot list the artifacts of run {run_id} ({first})") from None
    if CONFIG_ARTIFACT not in names:
        raise missing
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        return Path(path).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- best


def searched_keys(parent) -> list[str]:
    if parent is None:
        return []
    return sorted(k[len("space.") :] for k in parent.data.params if k.startswith("space."))


def _split_override(o: str) -> tuple[str, str]:
    key, _, value = o.partition("=")
    return key.lstrip("+~"), value


def logged_overrides(run) -> list[str]:
    """The job's Hydra overrides (tag sweep.overrides) without hydra.* ones, secrets masked."""
    raw = run.data.tags.get("sweep.overrides", "")
    try:
        parts = shlex.split(raw)
    except ValueError:
        parts = raw.split()
    out = []
    for o in parts:
        key, value = _split_override(o)
        if key == "hydra" or key.startswith("hydra."):
            continue
        if "=" in o and is_secret_key(key):
            o = f"{o.split('=', 1)[0]}={MASK}"
        out.append(mask_uri(o))
    return out


def best_params(run, keys: list[str], overrides: list[str]) -> dict[str, str]:
    """The searched keys' values of a trial. With the job's overrides at hand, only the keys the
    trial actually set (a conditional param inactive in this trial is left out)."""
    given = dict(_split_override(o) for o in overrides if "=" in o)
    params = run.data.params
    out: dict[str, str] = {}
    for key in keys:
        if overrides:
            if key in given:
                out[key] = given[key]
        elif key in params:
            out[key] = params[key]
        elif f"{key}.name" in params:  # a searched config group: scheduler -> scheduler.name
            out[key] = params[f"{key}.name"]
    return out


def train_command(overrides: list[str]) -> str:
    return " ".join(["python", "train.py", *(shlex.quote(o) for o in overrides)])


def show_best(
    experiment: str,
    tracking_uri: str | None = None,
    out: Printer = _out,
    study: str | None = None,
) -> int:
    uri = resolve_uri(tracking_uri, option="--tracking-uri")
    client = open_store(uri)
    b = best_run(client, experiment, uri, study)
    run = b.run
    for note in b.notes:
        _warn(note)
    keys = searched_keys(b.parent)
    overrides = logged_overrides(run)
    params = best_params(run, keys, overrides)
    if not overrides:  # a run without the tag: re-create what we can from its params
        overrides = [f"{k}={v}" for k, v in params.items()]
    tags = run.data.tags
    trial = tags.get("optuna.trial_number")
    out(f"experiment: {experiment}  (store {mask_uri(uri)})")
    if b.how != "optuna.best":
        out(f"note: {b.how}")
    out(
        f"best run:   {run.info.run_id}  {run.info.run_name or ''}"
        + (f"  (study {tags.get('optuna.study')}, trial {trial})" if trial is not None else "")
    )
    value = "n/a" if b.value is None else repr(b.value)
    out(f"value:      {b.objective} = {value}  ({b.direction})")
    shown = {m: run.data.metrics[m] for m in metrics.METRICS if m in run.data.metrics}
    if shown:
        out("metrics:    " + "  ".join(f"{k}={v:.6g}" for k, v in shown.items()))
    out("params:" if params else "params:     (no searched keys found)")
    for k, v in params.items():
        out(f"  {k} = {v}")
    out("re-create it with:")
    out(f"  {train_command(overrides)}")
    out(f"or re-run it exactly with:\n  python -m sweep reproduce {run.info.run_id}")
    _show_front(client, b.parent, out)
    _show_winner(client, b.parent, out)
    return 0


def _show_front(client, parent, out: Printer) -> None:
    """Several objectives: the sweep's Pareto front (runs tagged sweep.pareto=true), by trial."""
    names = (parent.data.params.get("sweeper.objectives") or "") if parent else ""
    if "," not in names:
        return
    members = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`sweep.pareto` = 'true'"
        ),
        max_results=5000,
    )
    members.sort(key=lambda r: int(r.data.tags.get("optuna.trial_number", "-1")))
    out(f"pareto front ({names}): {len(members)} feasible trial(s)")
    for r in members:
        values = "  ".join(
            f"{n}={float(r.data.tags.get(f'sweep.objective.{n}', 'nan')):.6g}"
            for n in names.split(",")
        )
        out(f"  trial {r.data.tags.get('optuna.trial_number')}: {values}  run {r.info.run_id}")


def _show_confirmed(client, parent, out: Printer) -> None:
    """Mean +- std over the new seeds of every confirmed configuration, best first."""
    from sweep.search.confirm import ROLE, confirmed_rows

    confirms = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`sweep.role` = '{ROLE}' and tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        ),
        max_results=5000,
    )
    objective = parent.data.params.get("sweeper.objective", "eval_f1")
    direction = parent.data.params.get("sweeper.direction", "maximize")
    out("confirmed:  (mean +- std of " + objective + " over new training seeds)")
    for r in confirmed_rows(confirms, objective, direction):
        mark = "  <- winner" if r["winner"] else ""
        out(
            f"  trial {r['trial']}: {r['mean']:.4f} +- {r['std']:.4f} over "
            f"{len(r['seeds'])} seeds{mark}"
        )


def _show_winner(client, parent, out: Printer) -> None:
    """The sweep's confirmed winner (sweep/search/confirm.py), when it has one."""
    tags = parent.data.tags if parent is not None else {}
    winner_id = tags.get("sweep.winner_run_id")
    if not winner_id:
        if parent is not None:
            out(
                "no confirmed winner yet: python -m sweep confirm --experiment NAME "
                "re-runs the best configurations with new seeds and chooses one"
            )
        return
    try:
        run = client.get_run(winner_id)
    except Exception:  # noqa: BLE001 - a deleted winner run
        return
    _show_confirmed(client, parent, out)
    m = run.data.metrics
    out(
        f"winner:     {winner_id}  trial {tags.get('sweep.winner_trial')} seed "
        f"{tags.get('sweep.winner_seed')}: mean {tags.get('sweep.winner_mean')} +- "
        f"{tags.get('sweep.winner_std')} over its confirmation seeds"
    )
    test = "  ".join(f"{k}={m[k]:.6g}" for k in ("test_loss", "test_accuracy", "test_f1") if k in m)
    if test:
        out(f"test:       {test}")
    if tags.get("sweep.refit_run_id"):  # hydra.sweeper.confirm.refit (sweep/search/refit.py)
        pm = parent.data.metrics  # the refit's test metrics, as refit_test_*
        shown = [k for k in metrics.TEST_METRICS if f"refit_{k}" in pm]
        refit = "  ".join(f"{k}={pm[f'refit_{k}']:.6g}" for k in shown)
        out(f"refit:      {tags['sweep.refit_run_id']} on train + validation: {refit}")
    if tags.get("sweep.model"):
        out(f"model:      {tags['sweep.model']} (alias champion)")


# --------------------------------------------------------------------------- reproduce


def compare(
    logged: Mapping[str, float], reproduced: Mapping[str, float], atol: float
) -> tuple[list[str], list[str]]:
    """The side-by-side table and the metrics that differ beyond `atol` (NaN equals NaN)."""
    rows = [f"{'metric':<15} {'logged':>22} {'reproduced':>22} {'abs diff':>10}"]
    bad: list[str] = []
    # a run's own test metrics too (a refit's one evaluation), never a winner's scored apart
    for m in (*metrics.METRICS, *(t for t in metrics.TEST_METRICS if t in reproduced)):
        a, b = logged.get(m), reproduced.get(m)
        if a is None and b is None:
            continue
        if a is None or b is None:
            diff, ok = "missing", a is None  # nothing logged to compare with is not a mismatch
        elif math.isnan(a) and math.isnan(b):
            diff, ok = "0", True
        else:
            d = abs(a - b)
            diff, ok = f"{d:.3g}", d <= atol
        rows.append(f"{m:<15} {_num(a):>22} {_num(b):>22} {diff:>10}" + ("" if ok else "  <-"))
        if not ok:
            bad.append(m)
    return rows, bad


def _num(x: float | None) -> str:
    return "-" if x is None else repr(float(x))


def prepare_config(text: str, uri: str, sets: Mapping[str, str] | None = None, env=None):
    """The logged config text -> a validated DictConfig of the schema, ready to run, plus the
    notes on filled values. Raises ReproduceError / ConfigError before anything runs."""
    tree = parse_config_text(text)
    to_config(tree)  # unknown keys / wrong types are refused before anything else
    tracking = tree.get("tracking")
    if isinstance(tracking, dict):
        tracking["uri"] = uri  # reproduce logs to the store it reads from; never a masked URI
    tree, notes = fill_masked(tree, sets, env)
    cfg = to_config(tree)
    cfg.tracking.uri = uri
    cfg.tracking.enabled = True
    validate(cfg)
    return cfg, notes


def parse_sets(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ReproduceError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _check_arguments(run_id: str | None, best: bool, experiment: str | None, atol: float) -> None:
    if bool(run_id) == bool(best):
        raise ReproduceError("give either RUN_ID or --best --experiment NAME")
    if best and not experiment:
        raise ReproduceError("--best needs --experiment NAME")
    if atol < 0 or not math.isfinite(atol):
        raise ReproduceError(f"--atol must be a finite number >= 0, got {atol}")


def _run_to_reproduce(
    client,
    run_id: str | None,
    best: bool,
    experiment: str | None,
    uri: str,
    out: Printer,
    warn: Printer,
):
    """The run named by RUN_ID, or with --best the best run of the experiment."""
    if not best:
        return get_run(client, run_id, uri)  # type: ignore[arg-type]
    b = best_run(client, experiment, uri)  # type: ignore[arg-type]
    for note in b.notes:
        warn(note)
    run = b.run
    out(f"best run of experiment {experiment!r}: {run.info.run_id} ({run.info.run_name})")
    return run


def _warn_about_original(run, warn: Printer) -> None:
    """A pruned or unfinished original has final metrics a full re-run need not match."""
    if run.data.tags.get("optuna.state") == "PRUNED":
        warn(
            "the original trial was pruned; the reproduction runs to the end, so its final "
            "metrics are compared with the last evaluation the trial logged"
        )
    if run.info.status != "FINISHED":
        warn(f"the original run ended as {run.info.status}")


def _environment_drift(run, cfg: DictConfig, warn: Printer) -> list[str]:
    """Warn about, and return, every difference from the logged environment and data: the data
    with the run's fingerprint tag, and split by split with the digests of its MLflow dataset
    inputs (runs from before 2026-12 have none)."""
    from sweep.track.tracking import environment_tags

    tags = run.data.tags
    drift = environment_drift(tags, environment_tags())
    raw = None
    try:
        from sweep.train.data import load_raw

        raw = load_raw(cfg.data)
    except Exception as e:  # noqa: BLE001 - the run itself will say what is wrong with the data
        warn(f"could not compute the current data fingerprint ({str(e).strip()[:200]})")
    d = data_drift(tags.get("sweep.data_fingerprint"), raw.fingerprint if raw else None)
    if d:
        drift.append(d)
    for split, digest in logged_digests(run):
        now = raw.digests.get(split) if raw is not None else None
        if split != "test" and now and now != digest:
            drift.append(f"{split} data changed (MLflow dataset digest {digest} -> {now})")
    for line in drift:
        warn(line)
    if tags.get("sweep.git_dirty") == "true":
        warn("the original run had uncommitted changes (git dirty): its code may not be this one")
    if drift:
        warn(f"{len(drift)} difference(s) from the logged environment: metrics may not match")
    return drift


def _run_again(cfg: DictConfig, run, notes: list[str], drift: list[str], uri: str, out: Printer):
    """Train with the logged config as a new run tagged reproduces=<run id>; its outcome."""
    from sweep.train.runner import run_job

    run_id = run.info.run_id
    cfg.tracking.run_name = f"reproduce {run.info.run_name or run_id}"
    extra = {"reproduces": run_id, "mlflow.source.name": "python -m sweep reproduce"}
    if notes:
        extra["sweep.filled"] = ", ".join(n.split(":", 1)[0] for n in notes)
    if drift:
        extra["sweep.drift"] = "; ".join(drift)[:5000]
    out(f"reproducing run {run_id} ({run.info.run_name}) in {mask_uri(uri)} ...")
    return run_job(cfg, None, extra_tags=extra, want_outcome=True)


def _check_metrics(run, outcome, atol: float, out: Printer, warn: Printer) -> None:
    """Print the logged and reproduced metrics side by side; MismatchError if they differ."""
    run_id = run.info.run_id
    names = (*metrics.METRICS, *metrics.TEST_METRICS)
    logged = {m: run.data.metrics[m] for m in names if m in run.data.metrics}
    rows, bad = compare(logged, outcome.final, atol)
    out(f"reproduced as run {outcome.run_id} (tagged reproduces={run_id})")
    for row in rows:
        out(row)
    if not logged:
        warn(f"run {run_id} logged none of {', '.join(metrics.METRICS)}: nothing to compare")
    if bad:
        raise MismatchError(
            f"reproduced metrics differ from run {run_id} beyond --atol {atol:g}: "
            + ", ".join(f"{m} {_num(logged.get(m))} vs {_num(outcome.final.get(m))}" for m in bad)
        )
    out(f"OK: the reproduced metrics match run {run_id} (atol {atol:g})")


def reproduce(
    run_id: str | None = None,
    *,
    best: bool = False,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    atol: float = 1e-6,
    sets: Mapping[str, str] | None = None,
    out: Printer = _out,
    warn: Printer = _warn,
) -> int:
    """Re-run a logged run. Returns 0 when the metrics match; raises MismatchError (exit 1) when
    they don't, ReproduceError / ConfigError / TrackingError / DataError (exit 2) on bad input."""
    _check_arguments(run_id, best, experiment, atol)
    uri = resolve_uri(tracking_uri, option="--tracking-uri")
    client = open_store(uri)
    run = _run_to_reproduce(client, run_id, best, experiment, uri, out, warn)
    text = read_config_artifact(client, run, uri)
    cfg, notes = prepare_config(text, uri, sets)
    for note in notes:
        out(f"note: {note}")
    _warn_about_original(run, warn)
    drift = _environment_drift(run, cfg, warn)
    outcome = _run_again(cfg, run, notes, drift, uri, out)
    _check_metrics(run, outcome, atol, out, warn)
    return 0
