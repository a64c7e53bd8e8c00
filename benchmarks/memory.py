"""Memory of a process that runs many trials in-process stays flat.

    .venv/bin/python benchmarks/memory.py                 # 2 trials, then 20 trials
    .venv/bin/python benchmarks/memory.py --trials 2 50

Runs `python train.py -m hydra.sweeper.n_workers=1` (one process) with the default model (MiniLM)
and small trials (64 training samples: 8 steps each) once per trial count, each in a fresh
directory, and reports the peak RSS of the sweep process. Hydra's basic launcher runs every
trial inside the sweep's process, so a leak per trial (models, optimizers, datasets, MLflow
clients, Optuna objects kept alive) shows up as growth from the short sweep to the long one.
Appends a JSON line to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(n_trials: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        cmd = [
            sys.executable,
            "-c",
            # the sweep in a child of a fresh interpreter: RUSAGE_CHILDREN is then this sweep's
            "import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.pruner=none",
            "hydra.sweeper.n_workers=1",  # every trial in this one process
            "hydra.sweeper.confirm.top_k=0",  # trials only
            "data.max_train_samples=64",
            "data.max_eval_samples=32",
            "trainer.eval_every=4",
        ]
        env = {**os.environ, "SWEEP_CACHE_DIR": str(Path(tmp) / "cache"), "CI": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{n_trials} trials failed:\n{proc.stderr[-3000:]}")
        return int(proc.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, nargs=2, default=[2, 20], metavar=("FEW", "MANY"))
    a = ap.parse_args()
    few, many = a.trials
    rss_few, s_few = peak_rss_mb(few)
    rss_many, s_many = peak_rss_mb(many)
    line = {
        "benchmark": "memory",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "trials": [few, many],
        "peak_rss_mb": [round(rss_few, 1), round(rss_many, 1)],
        "growth": round(rss_many / rss_few - 1, 4),
        "wall_s": [round(s_few, 1), round(s_many, 1)],
    }
    print(json.dumps(line))
    with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
