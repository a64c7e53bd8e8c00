"""Team-scale load: N long-lived sweep workers on one PostgreSQL study and one MLflow server.

    .venv/bin/python benchmarks/load.py                           # 8 workers x 200 trials
    .venv/bin/python benchmarks/load.py --workers 3 --trials 12   # CI size (tests/test_team.py)

Starts its own throw-away PostgreSQL cluster (Debian's server binaries) and an `mlflow server` on
it (artifacts proxied into a temporary folder), both on 127.0.0.1; then runs `--workers`
processes of `python train.py -m model=tiny ...` against one study with `n_trials=--trials`,
waits for all of them, and verifies what they left behind:

- the study holds exactly `--trials` counted trials (COMPLETE + PRUNED + un-retried FAIL), no
  duplicate trial numbers, nothing RUNNING or WAITING;
- MLflow holds one parent run and, under it, one child run per trial, each counted trial's run
  with train_loss, learning_rate, eval_loss, eval_accuracy and eval_f1.

Prints a table and one JSON line (trials/minute, wall time, per-worker trial counts, failures,
...), which is also appended to --results (default benchmarks/results.jsonl). Exit status 0 when
every check passed, 1 when one failed, 3 when PostgreSQL is not installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from services import MlflowServer, PgCluster, ServiceUnavailable  # noqa: E402

METRICS = ("train_loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_f1")
STUDY = "load"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=8, help="worker processes (default 8)")
    p.add_argument("--trials", type=int, default=200, help="n_trials of the study (default 200)")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per trial (default 10)")
    p.add_argument("--eval-every", type=int, default=5, help="steps between evaluations")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument(
        "--results",
        type=Path,
        default=ROOT / "benchmarks" / "results.jsonl",
        help="JSON-lines file the result is appended to",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds before workers are killed")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return p.parse_args(argv)


def worker_args(a: argparse.Namespace, tracking_uri: str, storage: str) -> list[str]:
    return [
        "-m",
        "model=tiny",
        "data.train_size=160",
        "data.eval_size=64",
        "data.max_length=48",
        "data.max_train_samples=160",
        "data.max_eval_samples=64",
        "trainer.train_batch_size=16",
        f"trainer.max_steps={a.steps}",
        f"trainer.eval_every={a.eval_every}",
        "trainer.logging_every=5",
        f"trainer.threads={a.threads}",
        "hydra.sweeper.n_workers=1",  # each of the --workers processes is one worker
        f"tracking.uri={tracking_uri}",
        f"tracking.experiment={STUDY}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={STUDY}",
        f"hydra.sweeper.n_trials={a.trials}",
        "hydra.sweeper.confirm.top_k=0",  # trials only: no confirmation stage
    ]


def verify(storage: str, tracking_uri: str, n_trials: int, pids: dict[int, int]) -> dict:
    """What the workers left behind; `problems` lists every failed check."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from sweep.search.study import FAIL_REASON, PID, RETRY_OF, RUN_ID, counted, open_storage

    problems: list[str] = []
    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    done = counted(trials)
    states = Counter(t.state.name for t in trials)
    if len(done) != n_trials:
        problems.append(f"{len(done)} counted trials, not {n_trials}")
    numbers = [t.number for t in trials]
    if len(numbers) != len(set(numbers)):
        problems.append("duplicate trial numbers")
    if states.get("RUNNING") or states.get("WAITING"):
        problems.append(f"trials left unfinished: {dict(states)}")
    per_worker = Counter()
    for t in done:
        per_worker[pids.get(int(t.system_attrs.get(PID, -1)), -1)] += 1

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([exp.experiment_id], max_results=5000) if exp else []
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    if len(parents) != 1:
        problems.append(f"{len(parents)} parent runs")
    parent_id = parents[0].info.run_id if parents else None
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    if parent_id and any(r.data.tags["mlflow.parentRunId"] != parent_id for r in children.values()):
        problems.append("child runs under another parent")
    per_number = Counter(r.data.tags.get("optuna.trial_number") for r in children.values())
    dupes = sorted(int(k) for k, v in per_number.items() if v > 1)
    if dupes:
        problems.append(f"trial numbers with several child runs: {dupes[:10]}")
    if len(children) != len(trials):
        problems.append(f"{len(children)} child runs for {len(trials)} trials")
    if any(r.info.status == "RUNNING" for r in children.values()):
        problems.append("child runs left RUNNING")
    no_metrics = []
    for t in done:
        run = children.get(t.user_attrs.get(RUN_ID, ""))
        lacks = run is not None and any(k not in run.data.metrics for k in METRICS)
        if run is None or (t.state != TrialState.FAIL and lacks):
            no_metrics.append(t.number)
    if no_metrics:
        problems.append(f"trials without their run or metrics: {no_metrics[:10]}")
    durations = sorted(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in done
        if t.datetime_complete and t.datetime_start
    )
    return {
        "trials_finished": len(done),
        "trials_total": len(trials),
        "states": dict(states),
        "failures": states.get("FAIL", 0),
        "retries": sum(RETRY_OF in t.system_attrs for t in trials),
        # why each failed trial failed, and which worker ran it (a failure is never expected here)
        "fail_reasons": {
            str(t.number): {
                "worker": pids.get(int(t.system_attrs.get(PID, -1))),
                "reason": t.system_attrs.get(FAIL_REASON, "no reason recorded"),
            }
            for t in trials
            if t.state == TrialState.FAIL
        },
        "per_worker_trials": {str(k): v for k, v in sorted(per_worker.items())},
        "child_runs": len(children),
        "parent_runs": len(parents),
        "trial_seconds_median": round(durations[len(durations) // 2], 2) if durations else None,
        "trial_seconds_p95": round(durations[int(len(durations) * 0.95)], 2) if durations else None,
        "problems": problems,
    }


def main(argv=None) -> int:
    a = parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="sweep-load-"))
    try:
        started_setup = time.time()
        cluster = PgCluster().start()
    except ServiceUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    server = None
    workers: list[subprocess.Popen] = []
    try:
        cluster.psql("CREATE ROLE bench LOGIN PASSWORD :'pw';", pw="bench-pw")
        cluster.psql("CREATE DATABASE optuna_load OWNER bench;")
        storage = cluster.url("bench", "bench-pw", "optuna_load")
        backend = cluster.url("mlflow", cluster.password, "mlflow")
        server = MlflowServer(backend, base / "artifacts", base / "mlflow-server.log").start()
        setup_s = time.time() - started_setup
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "SWEEP_CACHE_DIR": str(base / "cache"),
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        args = worker_args(a, server.uri, storage)
        print(
            f"setup {setup_s:.1f} s (PostgreSQL on :{cluster.port}, {server.uri}); "
            f"{a.workers} workers x {a.trials} trials of {a.steps} steps",
            flush=True,
        )
        started = time.time()
        ends: dict[int, float] = {}
        for i in range(a.workers):
            wdir = base / f"worker{i}"
            wdir.mkdir()
            with open(wdir / "worker.log", "w") as log:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, str(ROOT / "train.py"), *args],
                        cwd=wdir,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        pids = {p.pid: i for i, p in enumerate(workers)}
        codes: dict[int, int | None] = {}
        deadline = started + a.timeout
        last_report = started
        while len(codes) < len(workers) and time.time() < deadline:
            for i, p in enumerate(workers):
                if i not in codes and p.poll() is not None:
                    codes[i] = p.returncode
                    ends[i] = time.time() - started
            if time.time() - last_report > 60:
                last_report = time.time()
                print(
                    f"  {last_report - started:.0f} s: {len(codes)}/{len(workers)} workers done",
                    flush=True,
                )
            time.sleep(0.5)
        wall = time.time() - started
        for i, p in enumerate(workers):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                codes[i] = None
        result = verify(storage, server.uri, a.trials, pids)
        bad_exit = {str(i): c for i, c in codes.items() if c != 0}
        if bad_exit:
            result["problems"].append(f"workers exited non-zero or timed out: {bad_exit}")
        failed = result["fail_reasons"].values()
        failed_in = {str(f["worker"]) for f in failed if f["worker"] is not None}
        for i in sorted(set(bad_exit) | failed_in):
            tail = (base / f"worker{i}" / "worker.log").read_text()[-2000:]
            print(f"--- worker {i} log tail ---\n{tail}", file=sys.stderr)
        record = {
            "benchmark": "load",
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "command": "benchmarks/load.py " + " ".join(argv or sys.argv[1:]),
            "workers": a.workers,
            "n_trials": a.trials,
            "steps_per_trial": a.steps,
            "wall_s": round(wall, 1),
            "setup_s": round(setup_s, 1),
            "trials_per_minute": round(result["trials_finished"] / (wall / 60), 2),
            "worker_exit_s": {str(i): round(s, 1) for i, s in sorted(ends.items())},
            **result,
            "ok": not result["problems"],
        }
        print_table(record)
        line = json.dumps(record)
        print(line)
        a.results.parent.mkdir(parents=True, exist_ok=True)
        with open(a.results, "a") as f:
            f.write(line + "\n")
        return 0 if record["ok"] else 1
    finally:
        for p in workers:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        if server is not None:
            server.stop()
        cluster.stop()
        if a.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def print_table(r: dict) -> None:
    rows = [
        ("workers x trials", f"{r['workers']} x {r['n_trials']} ({r['steps_per_trial']} steps)"),
        ("wall time", f"{r['wall_s']:.1f} s (+ {r['setup_s']:.1f} s setup)"),
        ("throughput", f"{r['trials_per_minute']:.1f} trials/min"),
        ("finished / total", f"{r['trials_finished']} / {r['trials_total']} {r['states']}"),
        ("failures / retries", f"{r['failures']} / {r['retries']}"),
        ("per worker", " ".join(f"{k}:{v}" for k, v in r["per_worker_trials"].items())),
        ("trial s (median/p95)", f"{r['trial_seconds_median']} / {r['trial_seconds_p95']}"),
        ("child runs / parents", f"{r['child_runs']} / {r['parent_runs']}"),
        ("checks", "all passed" if r["ok"] else "; ".join(r["problems"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    sys.exit(main())
