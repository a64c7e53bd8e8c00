"""`python -m sweep report`: one self-contained HTML file describing a sweep.

    python -m sweep report --experiment NAME [--tracking-uri URI] [--out report.html]

The report holds the sweep's summary (study, objective, best value and params, trials by state,
the parent run's description), its trial table and interactive plots (optimization history,
learning rate vs. objective by schedule, parameter importances, the objective's curve per
trial). Plotly's JavaScript is inlined, so the file opens anywhere, offline, and can be mailed.

Where the numbers come from: the Optuna study when its storage (tag `sweep.storage` of the parent
run, else `.sweep/<experiment>.journal` in the working directory, else `--storage`) is reachable and
belongs to this sweep; otherwise MLflow alone (the parent run and its child runs), which is all a
colleague who was sent the MLflow store has.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.core import metrics
from sweep.core.config import MASK, mask_uri
from sweep.core.errors import UserError
from sweep.track.tracking import resolve_uri

log = logging.getLogger(__name__)

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


class ReportError(UserError, ValueError):
    """The report cannot be built (no sweep in the experiment, ...); one line."""


@dataclass
class Sweep:
    """What the report shows, whichever source it came from."""

    experiment: str
    experiment_id: str
    uri: str
    study: str
    parent: Any  # the MLflow parent run
    objective: str
    direction: str
    rows: list[dict[str, Any]]
    source: str
    notes: list[str] = field(default_factory=list)
    best: dict[str, Any] | None = None
    importances: dict[str, float] = field(default_factory=dict)
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    # the confirmation stage: one row per confirmed configuration, best mean first
    confirmed: list[dict[str, Any]] = field(default_factory=list)
    # every objective, in order (one, or several: a Pareto front), and each complete trial run's
    # values with its `pareto` / `feasible` tags (front_points)
    objectives: list[str] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def param_keys(self) -> list[str]:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k.startswith("params.") and k not in keys]
        return keys

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            state = str(r["state"]).split(" ")[0]
            out[state] = out.get(state, 0) + 1
        rank = {s: i for i, s in enumerate(STATES)}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(STATES))))


# --------------------------------------------------------------------------- MLflow


def find_parent(client, exp, study: str | None = None):
    """The sweep's parent run (tag sweep.role=parent); the newest one if several studies."""
    flt = "tags.`sweep.role` = 'parent'"
    if study:
        flt += f" and tags.`optuna.study` = '{study}'"
    parents = client.search_runs(
        [exp.experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"]
    )
    parents = [p for p in parents if p.info.lifecycle_stage == "active"]
    if not parents:
        which = f" for study {study!r}" if study else ""
        raise ReportError(
            f"experiment {exp.name!r} has no sweep parent run{which} (tag sweep.role=parent): "
            "was it logged by `python train.py -m`?"
        )
    notes = []
    if len(parents) > 1:
        studies = ", ".join(sorted({p.data.tags.get("optuna.study", "?") for p in parents}))
        notes.append(
            f"experiment {exp.name!r} holds {len(parents)} sweeps ({studies}); reporting the "
            f"newest, {parents[0].data.tags.get('optuna.study')!r} (choose with --study)"
        )
    return parents[0], notes


def child_runs(client, exp, parent) -> tuple[list, list]:
    """The parent's active child runs: (trials, confirmation runs); a refit run is neither."""
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=5000,
    )
    runs = [r for r in runs if r.info.lifecycle_stage == "active"]
    confirms = [r for r in runs if r.data.tags.get("sweep.role") == "confirm"]
    trials = [r for r in runs if r.data.tags.get("sweep.role") not in ("confirm", "refit")]
    return trials, confirms


def _number(run) -> int:
    try:
        return int(run.data.tags.get("optuna.trial_number", -1))
    except ValueError:
        return -1


def _as_number(v: Any) -> Any:
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if re.fullmatch(r"-?\d+", v.strip()) else f
    return v


def rows_from_mlflow(children: list, parent, objective: str) -> list[dict[str, Any]]:
    """The trial table from the child runs alone (tags optuna.*, params, sweep.* tags)."""
    from sweep.cli.reproduce import best_params, logged_overrides, objective_value, searched_keys

    keys = searched_keys(parent)
    rows = []
    for run in sorted(children, key=_number):
        tags = run.data.tags
        state = tags.get("optuna.state", run.info.status)
        value = objective_value(run, objective) if state == "COMPLETE" else None
        params = best_params(run, keys, logged_overrides(run))
        end, start = run.info.end_time, run.info.start_time
        rows.append(
            {
                "number": _number(run),
                "state": state,
                "value": value,
                **{f"params.{k}": _as_number(v) for k, v in params.items()},
                "duration_s": round((end - start) / 1000, 1) if end and start else None,
                "steps": _as_number(tags["sweep.steps"]) if "sweep.steps" in tags else None,
                "run_id": run.info.run_id,
                "fail_reason": tags.get("sweep.fail_reason") or tags.get("sweep.error", ""),
            }
        )
    return rows


def curves(client, children: list, objective: str) -> dict[int, list[tuple[int, float]]]:
    """The objective against the step, per trial (pruned trials show where they stopped)."""
    out = {}
    for run in children:
        try:
            hist = client.get_metric_history(run.info.run_id, objective)
        except Exception:  # noqa: BLE001 - a missing curve only costs one line of a plot
            continue
        pts = sorted((m.step, m.value) for m in hist if metrics.finite(m.value))
        if pts:
            out[_number(run)] = pts
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- Optuna


def storage_candidates(
    parent, study: str, storage: str | None, experiment: str | None = None
) -> list[str]:
    if storage:
        return [storage]
    from sweep.search.study import default_storage

    out = []
    tagged = parent.data.tags.get("sweep.storage")
    if tagged:
        out.append(tagged)
    local = default_storage(experiment or study, study)
    if local not in out:
        out.append(local)
    return out


def load_study(parent, study_name: str, storage: str | None = None, experiment: str | None = None):
    """The Optuna study of this sweep, or (None, why not)."""
    why = []
    for url in storage_candidates(parent, study_name, storage, experiment):
        shown = mask_uri(url)
        if f":{MASK}@" in url:
            why.append(f"{shown} has a masked password (pass --storage URL)")
            continue
        from sweep.search.study import journal_path

        path = journal_path(url)
        if path is None and url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
        if path is not None and not path.is_file():
            why.append(f"{shown} does not exist here")
            continue
        try:
            import optuna

            from sweep.search import study as study_mod

            study = optuna.load_study(study_name=study_name, storage=study_mod.open_storage(url))
        except Exception as e:  # noqa: BLE001 - any storage error means "use MLflow"
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            why.append(f"{shown}: {first}")
            continue
        owner = study.user_attrs.get("mlflow_parent_run_id")
        if owner and owner != parent.info.run_id:
            why.append(f"{shown} holds another sweep's study (parent run {owner})")
            continue
        return study, shown
    return None, "; ".join(why)


def _parse_distribution(text: str):
    """`FloatDistribution(high=0.001, log=True, low=1e-05, step=None)` -> the distribution,
    read with ast.literal_eval on each argument (never eval)."""
    import ast

    from optuna import distributions as d

    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    kinds = {
        "FloatDistribution": d.FloatDistribution,
        "IntDistribution": d.IntDistribution,
        "CategoricalDistribution": d.CategoricalDistribution,
    }
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    kind = kinds.get(node.func.id)
    if kind is None or node.args:
        return None
    try:
        return kind(**{k.arg: ast.literal_eval(k.value) for k in node.keywords})
    except (ValueError, TypeError, SyntaxError):
        return None


def study_from_rows(rows: list[dict[str, Any]], parent, direction: str):
    """An in-memory Optuna study of the COMPLETE trials (for parameter importances)."""
    import optuna

    dists = {}
    for k, v in parent.data.params.items():
        if k.startswith("space."):
            dist = _parse_distribution(v)
            if dist is not None:
                dists[k[len("space.") :]] = dist
    study = optuna.create_study(direction=direction)
    for r in rows:
        if r["state"] != "COMPLETE" or not metrics.finite(r["value"]):
            continue
        params, used = {}, {}
        for key, dist in dists.items():
            if f"params.{key}" not in r:
                continue
            v = r[f"params.{key}"]
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                match = [c for c in dist.choices if str(c) == str(v)]
                if not match:
                    continue
                v = match[0]
            elif isinstance(dist, optuna.distributions.IntDistribution):
                v = int(v)
            else:
                v = float(v)
            params[key], used[key] = v, dist
        try:
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=used, value=r["value"])
            )
        except ValueError:  # a value outside its logged distribution: leave the trial out
            continue
    return study


def importances(study, by: int = 0) -> dict[str, float]:
    """Parameter importances over the params every COMPLETE trial has (needs >= 3 trials and
    >= 2 such params) for objective `by`; {} when there are too few."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return {}
    common = set.intersection(*(set(t.params) for t in complete))
    if len(common) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = (lambda t: t.values[by]) if len(study.directions) > 1 else None
            found = optuna.importance.get_param_importances(
                study, params=sorted(common), target=target
            )
            return dict(found)
    except Exception as e:  # noqa: BLE001 - a plot must never fail the report
        log.info("no parameter importances: %s", e)
        return {}


# --------------------------------------------------------------------------- collect


def collect(
    experiment: str,
    tracking_uri: str | None = None,
    *,
    study: str | None = None,
    storage: str | None = None,
    use_optuna: bool = True,
) -> Sweep:
    from sweep.cli.reproduce import get_experiment, open_store
    from sweep.search.confirm import confirmed_rows

    uri = resolve_uri(tracking_uri, option="--tracking-uri")
    client = open_store(uri)
    exp = get_experiment(client, experiment, uri)
    parent, notes = find_parent(client, exp, study)
    ptags, pparams = parent.data.tags, parent.data.params
    name = ptags.get("optuna.study", study or experiment)
    objective = pparams.get("sweeper.objective", "eval_f1")
    direction = pparams.get("sweeper.direction") or metrics.direction(objective)
    names = pparams.get("sweeper.objectives", objective).split(",")
    children, confirms = child_runs(client, exp, parent)

    sweep = Sweep(
        experiment=experiment,
        experiment_id=exp.experiment_id,
        uri=uri,
        study=name,
        parent=parent,
        objective=objective,
        direction=direction,
        rows=[],
        source="MLflow (parent and child runs)",
        notes=notes,
        objectives=names,
        points=front_points(children, names),
    )
    optuna_study, where = (
        load_study(parent, name, storage, experiment) if use_optuna else (None, "")
    )
    if optuna_study is not None:
        _from_study(sweep, optuna_study, where)
    else:
        if use_optuna and where:
            sweep.notes.append(f"Optuna study not used ({where}): built from MLflow alone")
        sweep.rows = rows_from_mlflow(children, parent, objective)
        sweep.best = best_from_rows(sweep.rows, children, direction)
        sweep.importances = importances(study_from_rows(sweep.rows, parent, direction))
    _name_rows(sweep.rows, children)
    sweep.curves = curves(client, children, objective)
    sweep.confirmed = confirmed_rows(confirms, objective, sweep.direction)
    return sweep


def _from_study(sweep: Sweep, optuna_study, where: str) -> None:
    """The rows, best trial and importances from the Optuna study; with several objectives each
    row's `value` is the objective the sweep ranks by (sweeper.objective)."""
    from sweep.search import study as study_mod

    names = sweep.objectives
    by = names.index(sweep.objective) if sweep.objective in names else 0
    sweep.source = f"Optuna study in {where}, with MLflow"
    sweep.direction = optuna_study.directions[by].name.lower()
    sweep.rows = study_mod.trial_rows(optuna_study, names)
    if len(names) > 1:
        for r in sweep.rows:
            r["value"] = r.get(f"values.{sweep.objective}", r["value"])
    best = study_mod.best_trial(optuna_study, by)
    if best is not None:
        sweep.best = {
            "number": best.number,
            "value": best.values[by],
            "params": dict(best.params),
            "run_id": best.user_attrs.get(study_mod.RUN_ID),
        }
    sweep.importances = importances(optuna_study, by)


def front_points(children: list, names: list[str]) -> list[dict[str, Any]]:
    """Each COMPLETE trial run with its objectives' values (tags sweep.objective.<name>), its
    trial number and whether it is on the Pareto front / feasible (tags sweep.pareto /
    sweep.feasible, set by the sweep)."""
    out = []
    for r in children:
        t = r.data.tags
        if t.get("optuna.state") != "COMPLETE":
            continue
        values = [_as_number(t.get(f"sweep.objective.{n}", "nan")) for n in names]
        if not all(metrics.finite(v) for v in values):
            continue
        out.append(
            {
                "number": _number(r),
                "values": values,
                "pareto": t.get("sweep.pareto") == "true",
                "feasible": t.get("sweep.feasible") != "false",
                "run_id": r.info.run_id,
            }
        )
    return sorted(out, key=lambda p: p["number"])


def _name_rows(rows: list[dict[str, Any]], children: list) -> None:
    names = {r.info.run_id: r.info.run_name for r in children}
    for r in rows:
        r["run_name"] = names.get(r.get("run_id"), "")


def best_from_rows(rows: list[dict[str, Any]], children: list, direction: str) -> dict | None:
    """The run tagged optuna.best=true, else the best COMPLETE row by the direction."""
    flagged = {c.info.run_id for c in children if c.data.tags.get("optuna.best") == "true"}
    complete = [r for r in rows if r["state"] == "COMPLETE" and metrics.finite(r["value"])]
    picked = [r for r in complete if r["run_id"] in flagged]
    if not picked and complete:
        pick = metrics.pick(direction)
        picked = [pick(complete, key=lambda r: (r["value"], -r["number"]))]
    if not picked:
        return None
    r = picked[0]
    params = {k[len("params.") :]: v for k, v in r.items() if k.startswith("params.")}
    return {"number": r["number"], "value": r["value"], "params": params, "run_id": r["run_id"]}


# --------------------------------------------------------------------------- plots


# Every plot shares this look.
LAYOUT = {"template": "plotly_white", "height": 420, "margin": {"t": 50, "r": 20}}

Plot = tuple[str, str, Any]  # (id, caption, plotly figure)


def _completed(sweep: Sweep) -> list[dict[str, Any]]:
    """The COMPLETE trials with a finite value, by trial number: what most plots show."""
    return sorted(
        (r for r in sweep.rows if r["state"] == "COMPLETE" and metrics.finite(r["value"])),
        key=lambda r: r["number"],
    )


def history_figure(sweep: Sweep, done: list[dict[str, Any]]) -> Plot | None:
    """Each COMPLETE trial's objective and the best value so far; None without such trials."""
    import plotly.graph_objects as go

    if not done:
        return None
    better = metrics.pick(sweep.direction)
    best_so_far, running = [], None
    for r in done:
        running = r["value"] if running is None else better(running, r["value"])
        best_so_far.append(running)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[r["number"] for r in done],
            y=[r["value"] for r in done],
            mode="markers",
            name="trial",
            text=[r.get("run_name", "") for r in done],
        )
    )
    fig.add_trace(
        go.Scatter(x=[r["number"] for r in done], y=best_so_far, mode="lines", name="best so far")
    )
    fig.update_layout(
        title=f"Optimization history ({sweep.objective}, {sweep.direction})",
        xaxis_title="trial",
        yaxis_title=sweep.objective,
        **LAYOUT,
    )
    return "optimization-history", "Objective of each COMPLETE trial", fig


def lr_figure(sweep: Sweep, done: list[dict[str, Any]]) -> Plot | None:
    """Learning rate against the objective, one trace per LR schedule; None without an LR."""
    from sweep.track import plots

    groups = plots.by_schedule(
        (r.get("params.optimizer.lr"), r.get("params.scheduler"), r["value"], r["number"])
        for r in done
    )
    if not groups:
        return None
    fig = plots.lr_figure(groups, sweep.objective, sweep.direction, **LAYOUT)
    return "lr-vs-objective", "Each COMPLETE trial, coloured by LR schedule", fig


def importance_figure(sweep: Sweep) -> Plot | None:
    """Parameter importances as horizontal bars, largest on top; None without importances."""
    import plotly.graph_objects as go

    if not sweep.importances:
        return None
    items = sorted(sweep.importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h"))
    fig.update_layout(title="Parameter importances (fANOVA)", xaxis_title="importance", **LAYOUT)
    caption = (
        "How much of the objective's variance each parameter explains "
        "(parameters every COMPLETE trial has)"
    )
    return "param-importances", caption, fig


def curves_figure(sweep: Sweep) -> Plot | None:
    """The objective against the step, one line per trial, dotted unless COMPLETE; None without
    curves."""
    import plotly.graph_objects as go

    if not sweep.curves:
        return None
    states = {r["number"]: str(r["state"]).split(" ")[0] for r in sweep.rows}
    fig = go.Figure()
    for number, pts in sweep.curves.items():
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                mode="lines+markers",
                name=f"trial {number} ({states.get(number, '?')})",
                line={"dash": "dot"} if states.get(number) != "COMPLETE" else {},
            )
        )
    fig.update_layout(
        title=f"{sweep.objective} against the step, per trial",
        xaxis_title="step",
        yaxis_title=sweep.objective,
        **LAYOUT,
    )
    return "curves", "Pruned and failed trials are dotted", fig


def pareto_figure(sweep: Sweep) -> Plot | None:
    """Several objectives: the first against the second for every complete trial, the Pareto
    front's members marked and joined, infeasible trials grey; None with one objective."""
    import plotly.graph_objects as go

    if len(sweep.objectives) < 2 or not sweep.points:
        return None
    y_name, x_name = sweep.objectives[0], sweep.objectives[1]
    groups = (
        ("Pareto front", [p for p in sweep.points if p["pareto"]], "#d62728"),
        ("other feasible", [p for p in sweep.points if p["feasible"] and not p["pareto"]], None),
        ("infeasible", [p for p in sweep.points if not p["feasible"]], "#bbbbbb"),
    )
    fig = go.Figure()
    for name, pts, color in groups:
        if not pts:
            continue
        if name == "Pareto front":
            pts = sorted(pts, key=lambda p: p["values"][1])
        fig.add_trace(
            go.Scatter(
                x=[p["values"][1] for p in pts],
                y=[p["values"][0] for p in pts],
                text=[f"trial {p['number']}" for p in pts],
                mode="lines+markers" if name == "Pareto front" else "markers",
                marker={"size": 10, **({"color": color} if color else {})},
                name=name,
            )
        )
    fig.update_layout(
        title=f"Pareto front: {y_name} against {x_name}",
        xaxis_title=x_name,
        yaxis_title=y_name,
        **LAYOUT,
    )
    caption = f"Every complete trial; the front's members ({len(groups[0][1])}) joined."
    return ("pareto", caption, fig)


def front_html(sweep: Sweep) -> str:
    """The Pareto front's members as a table (several objectives only)."""
    members = [p for p in sweep.points if p["pareto"]]
    if len(sweep.objectives) < 2:
        return ""
    if not members:
        return '<h2 id="front">Pareto front</h2><p>No feasible complete trial yet.</p>'
    rows = {r["number"]: r for r in sweep.rows}
    heads = ("trial", *sweep.objectives, "params", "MLflow run id")
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    body = "".join(
        "<tr>"
        + f"<td>{_e(p['number'])}</td>"
        + "".join(f'<td class="num">{_e(fmt(v))}</td>' for v in p["values"])
        + f"<td>{_e(_params_of(rows.get(p['number'], {})))}</td>"
        + f"<td><code>{_e(p['run_id'])}</code></td></tr>"
        for p in members
    )
    return (
        '<h2 id="front">Pareto front</h2>'
        f"<p>{len(members)} feasible trial(s) no other feasible trial beats on every objective "
        f"({_e(', '.join(sweep.objectives))}).</p>"
        f'<table id="pareto-front"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _params_of(row: dict[str, Any]) -> str:
    return " ".join(
        f"{k[len('params.') :]}={fmt(v)}" for k, v in row.items() if k.startswith("params.")
    )


def figures(sweep: Sweep) -> list[tuple[str, str, Any]]:
    """(id, caption, plotly figure) for every plot the sweep supports."""
    done = _completed(sweep)
    made = (
        pareto_figure(sweep),
        history_figure(sweep, done),
        lr_figure(sweep, done),
        importance_figure(sweep),
        curves_figure(sweep),
    )
    return [f for f in made if f is not None]


# --------------------------------------------------------------------------- HTML

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d2430; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #dde; }
.meta { color: #5a6270; font-size: .9rem; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }
.card { border: 1px solid #dde; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card .k { color: #5a6270; font-size: .8rem; } .card .v { font-size: 1.4rem; font-weight: 600; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { border-bottom: 1px solid #e4e6eb; padding: .3rem .5rem; text-align: left; }
th { background: #f4f5f7; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best { background: #eaf7ea; font-weight: 600; }
.state-PRUNED { color: #a66300; } .state-FAIL { color: #b3261e; }
.state-COMPLETE { color: #1e7b34; }
code { background: #f4f5f7; padding: 0 .25rem; border-radius: 3px; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: .4rem .8rem; }
.figure { margin: 1rem 0 2rem; } .caption { color: #5a6270; font-size: .85rem; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def fmt(v: Any, key: str = "") -> str:
    if v is None or v == "":
        return "-"
    if key == "duration_s" and metrics.finite(v):
        return f"{v:.1f}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3g}" if v != 0 and abs(v) < 1e-2 else f"{v:.4f}"
    return str(v)


def markdown_lite(text: str) -> str:
    """The parent run's description (MLflow note, markdown) as escaped HTML: paragraphs,
    **bold** and `code` only."""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        p = _e(para)
        p = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", p)
        p = re.sub(r"`(.+?)`", r"<code>\1</code>", p)
        out.append(f"<p>{p}</p>")
    return "\n".join(out)


def summary_html(sweep: Sweep) -> str:
    counts = sweep.counts()
    best = sweep.best
    cards = [
        ("best " + sweep.objective, fmt(best["value"]) if best else "-"),
        ("direction", sweep.direction),
        ("trials", str(len(sweep.rows))),
        *((state.lower(), str(n)) for state, n in counts.items()),
    ]
    parts = ['<div class="cards">']
    parts += [
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
        for k, v in cards
    ]
    parts.append("</div>")
    if best:
        params = ", ".join(f"<code>{_e(k)}={_e(fmt(v))}</code>" for k, v in best["params"].items())
        parts.append(
            f"<p>Best trial <strong>{_e(best['number'])}</strong>: {_e(sweep.objective)} = "
            f"<strong>{_e(best['value'])}</strong> with {params or '(no searched params)'}"
            f" &mdash; MLflow run <code>{_e(best['run_id'])}</code>.</p>"
        )
        if best["run_id"]:
            parts.append(
                "<p>Re-run it from MLflow alone: "
                f"<code>python -m sweep reproduce {_e(best['run_id'])}</code></p>"
            )
    else:
        parts.append("<p>No trial has completed yet.</p>")
    note = sweep.parent.data.tags.get("mlflow.note.content")
    if note:
        parts.append("<h3>Description</h3>" + markdown_lite(note))
    return "\n".join(parts)


def confirmation_html(sweep: Sweep) -> str:
    """The confirmation stage: mean +- std over the new seeds per configuration, the winner."""
    if not sweep.confirmed:
        return (
            "<p>Not confirmed: <code>python -m sweep confirm --experiment "
            f"{_e(sweep.experiment)}</code> re-runs the best configurations with new seeds and "
            "chooses, tests and registers a winner.</p>"
        )
    values = {r["number"]: r.get("value") for r in sweep.rows}
    head = "".join(
        f"<th>{h}</th>"
        for h in ("trial", "search value", "mean", "std", "seeds", "values", "winner")
    )
    body = []
    for r in sweep.confirmed:
        each = ", ".join(
            f"{fmt(v)} (seed {s})" for v, s in zip(r["values"], r["seeds"], strict=True)
        )
        cells = [
            r["trial"],
            fmt(values.get(r["trial"])),
            fmt(r["mean"]),
            fmt(r["std"]),
            len(r["seeds"]),
            each,
            "winner" if r["winner"] else "",
        ]
        cls = ' class="best"' if r["winner"] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out = [f'<table id="confirmed"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>']
    out.append("</table>")
    win = next((r for r in sweep.confirmed if r["winner"]), None)
    if win:
        test = ", ".join(f"{_e(k)} <strong>{_e(fmt(v))}</strong>" for k, v in win["test"].items())
        out.append(
            f"<p>Winner: trial <strong>{_e(win['trial'])}</strong>, mean {_e(sweep.objective)} "
            f"<strong>{_e(fmt(win['mean']))}</strong> &plusmn; {_e(fmt(win['std']))} over "
            f"{len(win['seeds'])} new seeds; run <code>{_e(win['winner'])}</code>. "
            f"On the test split: {test or 'no test split'}. Model <code>{_e(win['model'])}</code>"
            " (alias <code>champion</code>).</p>"
        )
    return "\n".join(out)


def table_html(sweep: Sweep) -> str:
    pkeys = sweep.param_keys
    cols = [("#", "number"), ("state", "state"), (sweep.objective, "value")]
    cols += [(k[len("params.") :], k) for k in pkeys]
    cols += [("seconds", "duration_s"), ("steps", "steps"), ("run name", "run_name")]
    cols += [("MLflow run id", "run_id")]
    if any(r.get("fail_reason") for r in sweep.rows):
        cols.append(("fail reason", "fail_reason"))
    best_number = sweep.best["number"] if sweep.best else None
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in cols)
    body = []
    for r in sorted(sweep.rows, key=lambda r: r["number"]):
        cells = []
        for _, k in cols:
            v = r.get(k)
            if k == "state":
                base = str(v).split(" ")[0]
                cells.append(f'<td class="state-{_e(base)}">{_e(v)}</td>')
            elif k == "run_id":
                cells.append(f"<td><code>{_e(v or '-')}</code></td>")
            else:
                cls = ' class="num"' if metrics.finite(v) else ""
                cells.append(f"<td{cls}>{_e(fmt(v, k))}</td>")
        cls = ' class="best"' if r["number"] == best_number else ""
        body.append(f'<tr{cls} data-trial="{_e(r["number"])}">{"".join(cells)}</tr>')
    return (
        f'<table id="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def render(sweep: Sweep) -> str:
    from plotly.offline import get_plotlyjs

    figs = figures(sweep)
    plot_parts = []
    for fid, caption, fig in figs:
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=fid,
            config={"displaylogo": False, "responsive": True},
        )
        plot_parts.append(
            f'<div class="figure">{div}<div class="caption">{_e(caption)}</div></div>'
        )
    if not plot_parts:
        plot_parts.append("<p>No COMPLETE trial yet: nothing to plot.</p>")
    parent = sweep.parent
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in sweep.notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sweep {_e(sweep.study)}: report</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<h1>Sweep <code>{_e(sweep.study)}</code></h1>
<p class="meta">MLflow experiment <strong>{_e(sweep.experiment)}</strong>
(id {_e(sweep.experiment_id)}) in <code>{_e(mask_uri(sweep.uri))}</code>;
parent run <code>{_e(parent.info.run_id)}</code> ({_e(parent.info.run_name)},
{_e(parent.info.status)}); objective <code>{_e(sweep.objective)}</code>.
Built from: {_e(sweep.source)}. Generated {when}.</p>
{notes}
<h2 id="summary">Summary</h2>
{summary_html(sweep)}
{front_html(sweep)}
<h2 id="confirmation">Confirmation</h2>
{confirmation_html(sweep)}
<h2 id="plots">Plots</h2>
{"".join(plot_parts)}
<h2 id="trial-table">Trials</h2>
{table_html(sweep)}
</body>
</html>
"""


def write(
    experiment: str,
    tracking_uri: str | None = None,
    out: str | Path = "report.html",
    *,
    study: str | None = None,
    storage: str | None = None,
    use_optuna: bool = True,
) -> tuple[Path, Sweep]:
    sweep = collect(experiment, tracking_uri, study=study, storage=storage, use_optuna=use_optuna)
    path = Path(out)
    if path.parent and not path.parent.is_dir():
        raise ReportError(f"cannot write {path}: directory {path.parent} does not exist")
    path.write_text(render(sweep), encoding="utf-8")
    return path.resolve(), sweep
