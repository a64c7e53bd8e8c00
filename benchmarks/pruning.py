"""How well the default search's pruning evaluations predict a trial's final objective.

    .venv/bin/python benchmarks/pruning.py --data sentences --seeds 0 1 2
    .venv/bin/python benchmarks/pruning.py --data agnews --seeds 0 1 2 --set trainer.eval_subset=0

Runs the default sweep (`python train.py -m`, conf/search/lr_schedule.yaml) with
`hydra.sweeper.pruner=none`, so every trial runs to its end and logs its whole curve: eval_loss and
eval_f1 at every evaluation (before the last step on the `trainer.eval_subset` samples) and the
final objective on all evaluation samples. From those curves, per sweep seed:

- Spearman's rank correlation, over the sweep's trials, between what a pruner sees at each step
  (-eval_loss and eval_f1 on the subset) and the final eval_f1;
- the default pruner replayed (Optuna's own MedianPruner with the search's start-up trials and
  warm-up steps, trials in number order, reporting the `prune_on` metric as the sweep does): how
  many trials it prunes, whether it prunes the trial that ended best, and the best final eval_f1
  among the trials it lets finish. The same replay for `prune_on` eval_f1 and other warm-ups.

Prints a JSON line per seed (appended to benchmarks/results.jsonl) and a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import textsets  # noqa: E402  (benchmarks/textsets.py)

ROOT = textsets.ROOT


def curves(wd: Path) -> list[dict]:
    """Each trial's lr, schedule, eval curves {step: value} and final objective, from MLflow."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("prune")
    out = []
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        if "optuna.trial_number" not in r.data.tags:
            continue
        hist = {
            m: {p.step: p.value for p in client.get_metric_history(r.info.run_id, m)}
            for m in ("eval_loss", "eval_f1")
        }
        last = max(hist["eval_f1"])
        out.append(
            {
                "number": int(r.data.tags["optuna.trial_number"]),
                "lr": float(r.data.params["optimizer.lr"]),
                "schedule": r.data.params["scheduler.name"],
                "final": hist["eval_f1"][last],
                "last_step": last,
                "loss": {s: v for s, v in hist["eval_loss"].items() if s < last},
                "f1": {s: v for s, v in hist["eval_f1"].items() if s < last},
            }
        )
    return sorted(out, key=lambda t: t["number"])


def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)


def replay(trials: list[dict], metric: str, startup: int, warmup: int) -> dict:
    """Optuna's MedianPruner over the recorded curves, trials in number order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup),
    )
    kept, pruned = [], []
    for t in trials:
        trial = study.ask()
        values = t["loss"] if metric == "eval_loss" else t["f1"]
        stopped = False
        for step in sorted(values):
            trial.report(-values[step] if metric == "eval_loss" else values[step], step)
            if trial.should_prune():
                stopped = True
                break
        if stopped:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            pruned.append(t)
        else:
            study.tell(trial, t["final"])
            kept.append(t)
    best = max(trials, key=lambda t: t["final"])
    return {
        "pruned": len(pruned),
        "pruned_the_best": best in pruned,
        "best_kept": max((t["final"] for t in kept), default=None),
        "best": best["final"],
    }


def one_seed(a: argparse.Namespace, seed: int, search) -> dict:
    with tempfile.TemporaryDirectory(prefix="prune-") as tmp:
        wd = Path(tmp)
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            *textsets.overrides(a.data),
            *a.set,
            "hydra.sweeper.pruner=none",
            "hydra.sweeper.confirm.top_k=0",  # trials only: no confirmation stage
            f"hydra.sweeper.seed={seed}",
            f"hydra.sweeper.n_trials={a.trials}",
            f"trainer.seed={seed}",
            f"tracking.uri=sqlite:///{wd / 'mlflow.db'}",
            "tracking.experiment=prune",
        ]
        env = {**os.environ, "SWEEP_CACHE_DIR": str(wd / "cache"), "CI": "1"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"seed {seed} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        trials = curves(wd)
    finals = [t["final"] for t in trials]
    steps = sorted(set.intersection(*(set(t["loss"]) for t in trials)))
    rho = {
        f"rho_{m}@{s}": round(
            spearman([(-t["loss"][s] if m == "eval_loss" else t["f1"][s]) for t in trials], finals),
            3,
        )
        for m in ("eval_loss", "eval_f1")
        for s in steps
    }
    startup = search.pruner_startup_trials
    replays = {
        f"{m}@warmup{w}": replay(trials, m, startup, w)
        for m in ("eval_loss", "eval_f1")
        for w in sorted({search.pruner_warmup_steps, *a.warmups})
    }
    return {
        "bench": "pruning",
        "data": a.data,
        "set": a.set,
        "seed": seed,
        "wall_s": round(wall, 1),
        "trials": [{k: t[k] for k in ("number", "lr", "schedule", "final")} for t in trials],
        **rho,
        "replay": replays,
    }


def summary(rows: list[dict], default: str) -> str:
    keys = [k for k in rows[0] if k.startswith("rho_")]
    out = [
        "| what the pruner sees | Spearman rho with final eval_f1, mean over seeds (each) |",
        "|---|---|",
    ]
    for k in keys:
        vals = [r[k] for r in rows]
        each = ", ".join(f"{v:+.2f}" for v in vals)
        out.append(f"| {k.removeprefix('rho_')} | {statistics.fmean(vals):+.2f} ({each}) |")
    out += [
        "",
        "| replayed MedianPruner | pruned of trials | pruned the best | best kept - best |",
        "|---|---|---|---|",
    ]
    for name in rows[0]["replay"]:
        reps = [r["replay"][name] for r in rows]
        n = len(rows[0]["trials"])
        pruned = statistics.fmean(x["pruned"] for x in reps)
        hit = sum(x["pruned_the_best"] for x in reps)
        gap = statistics.fmean((x["best_kept"] or 0.0) - x["best"] for x in reps)
        mark = " (default)" if name == default else ""
        out.append(
            f"| {name}{mark} | {pruned:.1f} of {n} | {hit} of {len(reps)} sweeps | {gap:+.4f} |"
        )
    return "\n".join(out)


def main() -> None:
    from omegaconf import OmegaConf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=textsets.NAMES, default="synthetic")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--warmups", type=int, nargs="*", default=[16, 48])
    ap.add_argument("--set", action="append", default=[], help="another override, repeatable")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    search = OmegaConf.load(ROOT / "conf" / "search" / "lr_schedule.yaml").hydra.sweeper
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, "
            f"{platform.machine()}"}  # fmt: skip
    rows = []
    for seed in a.seeds:
        row = one_seed(a, seed, search)
        rows.append(row)
        line = json.dumps({**meta, **row})
        print(line, flush=True)
        with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
            f.write(line + "\n")
    default = f"{search.prune_on}@warmup{search.pruner_warmup_steps}"
    md = f"{a.data}, {' '.join(a.set) or 'default search'}, seeds {a.seeds}\n\n"
    md += summary(rows, default) + "\n"
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md)


if __name__ == "__main__":
    main()
