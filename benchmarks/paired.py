"""Paired comparison of one setting over training seeds, on real or generated text.

    .venv/bin/python benchmarks/paired.py --data sentences \\
        --vary trainer.batch_order=random,length_grouped,bucketed --seeds 8
    .venv/bin/python benchmarks/paired.py --data agnews --set data.max_train_samples=2000 \\
        --vary trainer.batch_order=random,bucketed --seeds 8 --markdown /tmp/agnews.md

Runs `python train.py` once per (seed, value), each in a fresh directory with its own MLflow
store, `trainer.seed=<seed>` (which also seeds the batch order), and the other overrides given
with `--set`. `--jobs` runs that many side by side with cores / jobs torch threads each; the
(seed, value) pairs are interleaved so every value shares the machine alike. The first value of
`--vary` is the reference: for every other value the table shows the mean over seeds of the
paired difference (value minus reference, same seed) in eval F1 and its 95% confidence interval
(Student's t, n - 1 degrees of freedom), and the same for training step time.

Prints a JSON line per run (appended to benchmarks/results.jsonl with "bench": "paired") and a
Markdown table (`--markdown FILE` also writes it).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
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
import textsets as sets  # noqa: E402  (benchmarks/textsets.py)

ROOT = sets.ROOT
METRICS = ("eval_f1", "eval_accuracy", "eval_loss", "perf.step_seconds", "perf.padded_share")


def one_run(a: argparse.Namespace, key: str, value: str, seed: int, cache: Path) -> dict:
    threads = max(1, (os.cpu_count() or 1) // a.jobs)
    with tempfile.TemporaryDirectory(prefix="paired-") as tmp:
        wd = Path(tmp)
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            *sets.overrides(a.data),
            *a.set,
            f"{key}={value}",
            f"trainer.seed={seed}",
            f"trainer.threads={threads}",
            f"tracking.uri=sqlite:///{wd / 'mlflow.db'}",
            "tracking.experiment=paired",
        ]
        env = {**os.environ, "SWEEP_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
        exp = client.get_experiment_by_name("paired")
        (run,) = client.search_runs([exp.experiment_id])
        m = run.data.metrics
    return {
        "bench": "paired",
        "data": a.data,
        "set": a.set,
        "key": key,
        "value": value,
        "seed": seed,
        "wall_s": round(wall, 1),
        **{k: round(m[k], 4) for k in METRICS if k in m},
    }


def t95(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def paired(ref: list[float], other: list[float]) -> tuple[float, float, float]:
    """Mean of other - ref over seeds and its 95% confidence interval."""
    d = [o - r for o, r in zip(other, ref, strict=True)]
    mean = statistics.fmean(d)
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = t95(len(d)) * statistics.stdev(d) / len(d) ** 0.5
    return mean, mean - half, mean + half


def table(rows: list[dict], key: str, values: list[str], seeds: list[int]) -> str:
    by = {(r["value"], r["seed"]): r for r in rows}

    def col(v: str, metric: str) -> list[float]:
        return [by[(v, s)][metric] for s in seeds]

    ref = values[0]
    out = [
        f"| {key} | eval F1 mean +- sd | min | F1 diff vs {ref} [95% CI] | step s mean "
        f"| step s diff [95% CI] | padded |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in values:
        f1, step = col(v, "eval_f1"), col(v, "perf.step_seconds")
        sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
        if v == ref:
            diff_f1 = diff_step = "(reference)"
        else:
            m, lo, hi = paired(col(ref, "eval_f1"), f1)
            diff_f1 = f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            m, lo, hi = paired(col(ref, "perf.step_seconds"), step)
            diff_step = f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        padded = statistics.fmean(col(v, "perf.padded_share"))
        out.append(
            f"| {v} | {statistics.fmean(f1):.4f} +- {sd:.4f} | {min(f1):.4f} | {diff_f1} "
            f"| {statistics.fmean(step):.2f} | {diff_step} | {padded:.1%} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=sets.NAMES, default="synthetic")
    ap.add_argument("--vary", required=True, help="KEY=V1,V2,...: the first value is the reference")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="another override, repeatable")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    key, _, vals = a.vary.partition("=")
    values = [v for v in vals.split(",") if v]
    if not key or len(values) < 2:
        ap.error("--vary needs KEY=V1,V2[,...]")
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "jobs": a.jobs,
    }
    order = [(s, values[(i + s) % len(values)]) for s in seeds for i in range(len(values))]
    rows: list[dict] = []

    def record(row: dict) -> None:  # each run is kept as it ends, whatever happens later
        rows.append(row)
        line = json.dumps({**meta, **row})
        print(line, flush=True)
        with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
            f.write(line + "\n")

    with tempfile.TemporaryDirectory(prefix="paired-cache-") as cache:
        # one run first fills the tokenization cache the others read
        record(one_run(a, key, order[0][1], order[0][0], Path(cache)))
        with cf.ThreadPoolExecutor(a.jobs) as pool:
            futures = [pool.submit(one_run, a, key, v, s, Path(cache)) for s, v in order[1:]]
            for f in cf.as_completed(futures):
                record(f.result())
    heading = f"{a.data}, {' '.join(a.set) or 'defaults'}, seeds {seeds[0]}..{seeds[-1]}"
    md = f"{heading}\n\n{table(rows, key, values, seeds)}\n"
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md)


if __name__ == "__main__":
    main()
