"""Warm start vs cold start of a sweep whose search space changed (hydra.sweeper.warm_start).

    .venv/bin/python benchmarks/warm.py --data sentences --seeds 8
    .venv/bin/python benchmarks/warm.py --data sentences --seeds 1 --trials 4   # a quick look

Per seed s (hydra.sweeper.seed=s in all three sweeps, each a real `python train.py -m` on the
same journal and MLflow store in a fresh directory; the tokenize cache is shared):

1. the source: the default search (lr log 3e-5..4e-4, schedule, warm-up, power) for --trials
   trials;
2. the new sweep, whose space changed: the lr range widened to --new-lr (the kind of change the
   range advice suggests), for --trials trials, run cold and warm-started from the source (the
   order of the two alternates with the seed, so machine load drifts alike over both).

Sizing (the defaults): MiniLM on 240 training samples, batch 8 (30 steps), evaluated once at the
end on 200 validation samples, 6 trials per sweep, `n_workers=auto` (2 on 2 cores): about 5 min
a seed on 2 busy cores.

Measured: the cold sweep's final best eval_f1 C; for each new sweep, the number of its own
trials (by trial number, imported ones not counted) until one reaches eval_f1 >= C (a sweep that
never does counts as --trials + 1); the best eval_f1 of its own trials; its wall time. The table
gives the means and the paired difference warm - cold with a 95 % Student-t CI (n - 1 degrees
of freedom, benchmarks/paired.py). Pruning is off (`hydra.sweeper.pruner=none`): every trial
trains to the end, so "reaches" means the trial's final eval_f1. Confirmation is off.

Appends one JSON line per seed to benchmarks/results.jsonl ("bench": "warm") and prints a
Markdown table (--markdown FILE also writes it).
"""

from __future__ import annotations

import argparse
import datetime
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
import paired  # noqa: E402  (benchmarks/paired.py)
import textsets as sets  # noqa: E402  (benchmarks/textsets.py)

ROOT = sets.ROOT
sys.path.insert(0, str(ROOT))
EXPERIMENT = "warm"


def sweep(a: argparse.Namespace, wd: Path, seed: int, extra: list[str]) -> float:
    """One `python train.py -m` in `wd`; returns its wall time."""
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        *sets.overrides(a.data),
        f"data.max_train_samples={a.max_train}",
        f"data.max_eval_samples={a.max_eval}",
        f"trainer.train_batch_size={a.batch_size}",
        f"trainer.eval_every={a.eval_every or a.max_train // a.batch_size}",
        f"hydra.sweeper.n_trials={a.trials}",
        f"hydra.sweeper.seed={seed}",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.confirm.top_k=0",
        f"tracking.uri=sqlite:///{wd / 'mlflow.db'}",
        f"tracking.experiment={EXPERIMENT}",
        *a.set,
        *extra,
    ]
    env = {**os.environ, "SWEEP_CACHE_DIR": str(a.cache), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return wall


def studies(wd: Path) -> dict:
    import optuna

    from sweep.search.study import open_storage

    storage = open_storage(f"journal://{wd / '.sweep' / (EXPERIMENT + '.journal')}")
    names = optuna.study.get_all_study_names(storage=storage)
    return {n: optuna.load_study(study_name=n, storage=storage) for n in names}


def own_values(study) -> list[float | None]:
    """The eval_f1 of this sweep's own trials in trial-number order (None: not complete)."""
    from optuna.trial import TrialState

    from sweep.search.warm import IMPORTED

    own = [t for t in study.get_trials() if IMPORTED not in t.user_attrs]
    own.sort(key=lambda t: t.number)
    return [t.value if t.state == TrialState.COMPLETE else None for t in own]


def needed(values: list[float | None], target: float, n_trials: int) -> int:
    """Own trials until one reaches `target` (n_trials + 1 when none does)."""
    for i, v in enumerate(values, 1):
        if v is not None and v >= target - 1e-12:
            return i
    return n_trials + 1


def identity_doc(study) -> dict:
    from sweep.search.identity import DOC

    return json.loads(study.user_attrs[DOC])


def one_seed(a: argparse.Namespace, seed: int) -> dict:
    new = [f"optimizer.lr=tag(log, interval({a.new_lr[0]}, {a.new_lr[1]}))"]
    with tempfile.TemporaryDirectory(prefix="warm-") as tmp:
        wd = Path(tmp)
        walls = {"source": sweep(a, wd, seed, [])}
        (source,) = studies(wd)
        arms = ("cold", "warm") if seed % 2 == 0 else ("warm", "cold")
        for arm in arms:
            extra = new + ([f"hydra.sweeper.warm_start={source}"] if arm == "warm" else [])
            walls[arm] = sweep(a, wd, seed, extra)
        made = studies(wd)
        src = made.pop(source)
        warm = next(s for s in made.values() if "warm_start" in identity_doc(s)["sweeper"])
        cold = next(s for s in made.values() if s is not warm)
        imported = len(warm.get_trials()) - len(own_values(warm))
        vals = {"source": own_values(src), "cold": own_values(cold), "warm": own_values(warm)}
    target = max(v for v in vals["cold"] if v is not None)
    return {
        "bench": "warm",
        "data": a.data,
        "seed": seed,
        "trials": a.trials,
        "new_lr": a.new_lr,
        "set": a.set,
        "imported": imported,
        "cold_best": target,
        "warm_best": max((v for v in vals["warm"] if v is not None), default=None),
        "source_best": max((v for v in vals["source"] if v is not None), default=None),
        "cold_needed": needed(vals["cold"], target, a.trials),
        "warm_needed": needed(vals["warm"], target, a.trials),
        "values": vals,
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "host": platform.node(),
        "date": datetime.date.today().isoformat(),
    }


def ci(ref: list[float], other: list[float], fmt: str) -> str:
    m, lo, hi = paired.paired(ref, other)
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def table(rows: list[dict]) -> str:
    def col(key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    def wall(arm: str) -> list[float]:
        return [r["wall_s"][arm] for r in rows]

    cold_n, warm_n = col("cold_needed"), col("warm_needed")
    cold_b, warm_b = col("cold_best"), col("warm_best")
    out = [
        "| | cold | warm | warm - cold [95% CI] |",
        "|---|---|---|---|",
        "| own trials to reach the cold sweep's final best (mean) "
        f"| {statistics.fmean(cold_n):.2f} | {statistics.fmean(warm_n):.2f} "
        f"| {ci(cold_n, warm_n, '+.2f')} |",
        f"| best eval_f1 of its own trials (mean) | {statistics.fmean(cold_b):.4f} "
        f"| {statistics.fmean(warm_b):.4f} | {ci(cold_b, warm_b, '+.4f')} |",
        f"| wall time, s (mean) | {statistics.fmean(wall('cold')):.0f} "
        f"| {statistics.fmean(wall('warm')):.0f} | {ci(wall('cold'), wall('warm'), '+.0f')} |",
        "",
        "| seed | imported | source best | cold best | warm best | cold needed | warm needed "
        "| wall s source / cold / warm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w = r["wall_s"]
        out.append(
            f"| {r['seed']} | {r['imported']} | {r['source_best']:.4f} | {r['cold_best']:.4f} "
            f"| {r['warm_best']:.4f} | {r['cold_needed']} | {r['warm_needed']} "
            f"| {w['source']:.0f} / {w['cold']:.0f} / {w['warm']:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=sets.NAMES, default="sentences")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=6, help="n_trials of every sweep")
    ap.add_argument("--new-lr", nargs=2, type=float, default=[2e-5, 8e-4], metavar=("LOW", "HIGH"))
    ap.add_argument("--max-train", type=int, default=240)
    ap.add_argument("--max-eval", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=0, help="0: the last step only")
    ap.add_argument("--set", action="append", default=[], help="another override, repeatable")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="warm-cache-") as cache:
        a.cache = cache
        start = time.perf_counter()
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            row = one_seed(a, seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        total = time.perf_counter() - start
    text = table(rows) + f"\n\ntotal wall time {total:.0f} s"
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
