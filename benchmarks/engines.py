"""Dispatch overhead of the engines: the same 12 tiny trials, 4 at a time, on each.

    .venv/bin/python benchmarks/engines.py                 # local workers, Ray, SLURM, lock
    .venv/bin/python benchmarks/engines.py --arms ray slurm

Arms (each in a fresh folder, journal study, SQLite MLflow store):
- `local`: `python train.py -m hydra.sweeper.n_workers=4` (four local worker processes, each
  running its trials in-process);
- `ray`: `hydra/launcher=ray hydra.sweeper.n_jobs=4` on a Ray cluster on 127.0.0.1 (a head with no
  CPUs, two worker nodes with 2 CPUs each: tests/services.py RayCluster);
- `slurm`: `hydra/launcher=slurm hydra.sweeper.n_jobs=4` on a one-node SLURM cluster with 4 CPUs
  (tests/services.py SlurmCluster; needs root, slurm-wlm and munge);
- `lock`: on a throw-away PostgreSQL study, how long one worker holds the study lock to ask for a
  trial (fail stale trials, count, ask, claim), and how long a tell takes: what bounds the number
  of workers one study can serve (docs/scale.md).

Per engine arm: wall time of the command, trials/minute, and the dispatch overhead per trial:
from the trial's start in the study (the sweeper asked for it) to the start of its MLflow run
(the job is running our code), median and max. A job on an engine starts a Python process and
imports torch, transformers and MLflow; an in-process trial does not.

Prints a table and appends one JSON line per arm to --results (default benchmarks/results.jsonl).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from conftest import TINY as CONFTEST_TINY  # noqa: E402
from services import PgCluster, RayCluster, SlurmCluster  # noqa: E402

TRIALS = 12
JOBS = 4
# the test suite's tiny trial (tests/conftest.py), with this script's own worker count per arm
TINY = [o for o in CONFTEST_TINY if not o.startswith("hydra.sweeper.n_workers=")] + [
    "hydra.sweeper.heartbeat_interval=1",
    "trainer.threads=1",
]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def sweep(workdir: Path, extra: list[str], env: dict[str, str]) -> dict:
    args = ["-m", *TINY, f"hydra.sweeper.n_trials={TRIALS}", *extra]
    started = time.time()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=workdir,
        env={**os.environ, **OFFLINE, **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 1), **overheads(workdir)}


def overheads(workdir: Path) -> dict:
    import mlflow
    import optuna

    from sweep.search.study import RUN_ID, open_storage

    storage = open_storage(f"journal://{workdir / '.sweep' / 'tiny-synthetic.journal'}")
    (name,) = optuna.study.get_all_study_names(storage=storage)
    study = optuna.load_study(study_name=name, storage=storage)
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    gaps = []
    for t in study.trials:
        run = client.get_run(t.user_attrs[RUN_ID])
        gaps.append(run.info.start_time / 1000 - t.datetime_start.timestamp())
    finished = [t for t in study.trials if t.state.is_finished()]
    return {
        "trials": len(finished),
        "dispatch_median_s": round(statistics.median(gaps), 2),
        "dispatch_max_s": round(max(gaps), 2),
    }


def arm_local(base: Path) -> dict:
    return sweep(base, [f"hydra.sweeper.n_workers={JOBS}"], {})


def arm_ray(base: Path) -> dict:
    cluster = RayCluster(nodes=2, cpus=2, env=OFFLINE).start()
    try:
        return sweep(
            base,
            ["hydra.sweeper.n_workers=1", "hydra/launcher=ray", f"hydra.sweeper.n_jobs={JOBS}"],
            {"RAY_ADDRESS": cluster.address},
        )
    finally:
        cluster.stop()


def arm_slurm(base: Path) -> dict:
    cluster = SlurmCluster(cpus=JOBS).start()
    try:
        return sweep(
            base,
            [
                "hydra.sweeper.n_workers=1",
                "hydra/launcher=slurm",
                "hydra.launcher.poll_interval=0.5",
                f"hydra.sweeper.n_jobs={JOBS}",
            ],
            {"SLURM_CONF": str(cluster.conf)},
        )
    finally:
        cluster.stop()


def arm_lock(base: Path, rounds: int = 200) -> dict:
    """Lock hold time for one ask (as the sweeper does it) and the time of one tell, on a
    PostgreSQL study already holding `rounds` trials' worth of history as it grows."""
    import optuna

    from sweep.core import internals
    from sweep.search import study as study_mod

    pg = PgCluster().start()
    try:
        url = pg.url("optuna", pg.password, "optuna")
        spec = study_mod.StudySpec(name="lock", storage_url=url)
        study = study_mod.create_or_load(spec)
        lock = study_mod.StudyLock(url, "lock")
        storage = internals.storage(study)
        holds, tells = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            with lock:
                study_mod.fail_stale(study, 120, 1)
                study_mod.count(study)
                trial = study.ask()
                study_mod.claim(storage, trial._trial_id)
                trial.suggest_float("lr", 1e-5, 1e-3, log=True)
            holds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            study.tell(trial, float(i % 7))
            tells.append(time.perf_counter() - t0)
        n = len(holds)
        q = statistics.quantiles
        return {
            "rounds": n,
            "lock_hold_median_ms": round(1000 * statistics.median(holds), 1),
            "lock_hold_p95_ms": round(1000 * q(holds, n=20)[-1], 1),
            "lock_hold_last50_median_ms": round(1000 * statistics.median(holds[-50:]), 1),
            "tell_median_ms": round(1000 * statistics.median(tells), 1),
            "optuna": optuna.__version__,
        }
    finally:
        pg.stop()


ARMS = {"local": arm_local, "ray": arm_ray, "slurm": arm_slurm, "lock": arm_lock}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results.jsonl")
    args = p.parse_args(argv)
    rows = []
    for arm in args.arms:
        with tempfile.TemporaryDirectory(prefix=f"engines-{arm}-") as tmp:
            result = ARMS[arm](Path(tmp))
        if "wall_s" in result:
            result["trials_per_min"] = round(60 * result["trials"] / result["wall_s"], 1)
        row = {
            "benchmark": "engines",
            "arm": arm,
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "concurrent": JOBS,
            **result,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
