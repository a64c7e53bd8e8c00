"""Time the two default commands on this machine and record what they reach.

    .venv/bin/python benchmarks/defaults.py            # both
    .venv/bin/python benchmarks/defaults.py --only run # `python train.py`
    .venv/bin/python benchmarks/defaults.py --only sweep
    .venv/bin/python benchmarks/defaults.py --data agnews   # the same commands on real news

Each command runs in a fresh temporary directory (new MLflow store, new study) with a cold
tokenized-data cache, exactly as a user types it. Prints a JSON line per command (also appended to
benchmarks/results.jsonl) with the wall time, peak RSS of the process tree and what MLflow holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import textsets  # noqa: E402  (benchmarks/textsets.py)


def run(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    env = {**os.environ, "SWEEP_CACHE_DIR": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wall = time.perf_counter() - start
    (cwd / "output.log").write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); see {cwd / 'output.log'}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_kb, proc.stdout


def runs(cwd: Path, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def bench_run(cwd: Path, data: str) -> dict:
    wall, peak, _ = run([sys.executable, str(ROOT / "train.py"), *textsets.overrides(data)], cwd)
    (r,) = runs(cwd, textsets.experiment("minilm", data))
    m = r.data.metrics
    return {
        "command": "python train.py",
        "data": data,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak / 1024),
        "eval_accuracy": round(m["eval_accuracy"], 4),
        "eval_f1": round(m["eval_f1"], 4),
        "eval_loss": round(m["eval_loss"], 4),
        "steps": int(r.data.tags["sweep.steps"]),
    }


def bench_sweep(cwd: Path, data: str) -> dict:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *textsets.overrides(data)]
    wall, peak, out = run(cmd, cwd)
    experiment = textsets.experiment("minilm", data)
    trials = [r for r in runs(cwd, experiment) if "optuna.trial_number" in r.data.tags]
    states = [r.data.tags["optuna.state"] for r in trials]
    complete = [r for r in trials if r.data.tags["optuna.state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r.data.metrics["eval_f1"])
    return {
        "command": "python train.py -m",
        "data": data,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak / 1024),
        "trials": len(trials),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "best_eval_f1": round(best.data.metrics["eval_f1"], 4),
        "best_eval_accuracy": round(best.data.metrics["eval_accuracy"], 4),
        "best_params": {k: best.data.params[k] for k in ("optimizer.lr", "scheduler.name")},
        "table": out[max(0, out.rfind("\n#")) :].strip(),  # the trial table printed last
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("run", "sweep"))
    ap.add_argument("--data", choices=textsets.NAMES, default="synthetic")
    args = ap.parse_args()
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
    }
    for name, fn in (("run", bench_run), ("sweep", bench_sweep)):
        if args.only and args.only != name:
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            result = {**meta, **fn(Path(tmp), args.data)}
        line = json.dumps(result)
        print(line, flush=True)
        with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
