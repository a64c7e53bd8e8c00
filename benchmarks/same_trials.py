"""Behaviour unchanged? A seeded tiny sweep at two revisions, compared trial by trial.

    .venv/bin/python benchmarks/same_trials.py BEFORE [AFTER]     # AFTER: the working tree

Each revision is checked out into a temporary git worktree (the working tree itself for AFTER
when it is not given) and runs the same seeded sweep (tiny BERT, TPE, median pruner, 8 trials of
30 steps, objective eval_loss) with this checkout's virtual environment. The sweep's trials.csv
(logged on its parent run) is compared with the durations and run ids left out: state, value,
params and steps must match exactly. Exit status 0 when they do, 1 otherwise (a diff is printed).
A refactoring check, not a test: it needs git history and takes ~1 minute.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = [
    "-m",
    "model=tiny",
    "data.train_size=160",
    "data.eval_size=64",
    "data.max_length=48",
    "data.max_train_samples=160",
    "trainer.train_batch_size=16",
    "trainer.eval_every=5",
    "trainer.logging_every=5",
    "trainer.max_steps=30",
    "trainer.threads=1",
    "trainer.objective=eval_loss",
    "hydra.sweeper.direction=minimize",
    "hydra.sweeper.n_trials=8",
    "hydra.sweeper.n_workers=1",
    "hydra.sweeper.seed=0",
    "hydra.sweeper.sampler=tpe",
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.n_startup_trials=3",
    "hydra.sweeper.pruner_warmup_steps=10",
]
LEFT_OUT = ("duration_s", "run_id")
READ_TRIALS = """
import mlflow, sys
c = mlflow.MlflowClient("sqlite:///mlflow.db")
exp = c.get_experiment_by_name("tiny-synthetic")
(p,) = [r for r in c.search_runs([exp.experiment_id]) if r.data.tags.get("sweep.role") == "parent"]
sys.stdout.write(open(c.download_artifacts(p.info.run_id, "trials.csv", ".")).read())
"""


def trials(checkout: Path, workdir: Path) -> list[str]:
    """The seeded sweep's trials.csv rows at `checkout`, without durations and run ids."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["SWEEP_CACHE_DIR"] = str(workdir / "cache")
    run = subprocess.run(
        [sys.executable, str(checkout / "train.py"), *SWEEP],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        tail = (run.stdout + run.stderr)[-3000:]
        sys.exit(f"error: the sweep at {checkout} failed:\n{tail}")
    out = subprocess.run(
        [sys.executable, "-c", READ_TRIALS], cwd=workdir, capture_output=True, text=True, check=True
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return [json.dumps({k: v for k, v in r.items() if k not in LEFT_OUT}) for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="a git revision")
    ap.add_argument("after", nargs="?", help="a git revision (default: the working tree)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="same-trials-") as tmp:
        sides = {}
        for label, rev in (("before", args.before), ("after", args.after)):
            checkout = ROOT
            if rev:
                checkout = Path(tmp) / f"{label}-tree"
                git = ["git", "-C", str(ROOT), "worktree"]
                subprocess.run([*git, "add", "-q", "--detach", str(checkout), rev], check=True)
            try:
                (Path(tmp) / label).mkdir()
                sides[label] = trials(checkout, Path(tmp) / label)
            finally:
                if rev:
                    subprocess.run([*git, "remove", "--force", str(checkout)], check=True)
    same = sides["before"] == sides["after"]
    print(f"{len(sides['after'])} trials; identical: {same}")
    if not same:
        print("\n".join(difflib.unified_diff(sides["before"], sides["after"], lineterm="")))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
