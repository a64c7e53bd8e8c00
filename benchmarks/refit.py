"""Refit or not: the confirmed winner against its refit on train + validation, on the test split.

    .venv/bin/python benchmarks/refit.py --data sentences agnews --seeds 0 1 2 3 4 5 6 7
    .venv/bin/python benchmarks/refit.py --data sentences --seeds 0 --trials 4   # a quick look
    # the run of 2026-12-07 (half the default sizing, one thread a process: a busy machine)
    .venv/bin/python benchmarks/refit.py --data sentences agnews --seeds 0 1 2 3 4 5 6 7 \
        --trials 4 --set data.max_train_samples=320 --set data.max_eval_samples=100 \
        --set trainer.eval_every=8 --set hydra.sweeper.pruner_warmup_steps=24 \
        --set trainer.threads=1

Per (data set, seed), one sweep as a user runs it, in a fresh directory with its own MLflow store:
`python train.py -m` with the default search and its sizing (640 training / 200 validation
examples, batch 8, 80 steps per trial, `n_workers=auto`; `--set` changes it), `--trials` trials
(8), `hydra.sweeper.seed` = `trainer.seed` = the seed, confirmation of the `--top` (2) best with
`--confirm-seeds` (1) new seed, and `hydra.sweeper.confirm.refit=true`. So one sweep gives both
arms: the winner (scored on the test split and registered first, as without a refit) and its
refit (the winner's config and seed, `data.train_on_validation=true`: the validation examples
join the training examples for the same one epoch: 200 + 640, 105 steps instead of 80), on the
same test split (`sentences` 400 texts, `agnews` 1300). `trainer.threads=1` (set by the user, so
kept by the refit too) avoids two threads of one process waiting on each other on an
oversubscribed machine (the timing run: the refit's 105 steps took 470 s on two threads).

Both arms are scored the same way: by the served model in fp32 (sweep/track/served.py), the
winner by the sweep itself (its `test_f1`), the refit here, from the registered champion. The
refit run's own test metrics (its one in-run evaluation, under the run's precision: bf16 autocast
on this CPU) are shown beside them.

Decision rule, fixed before the run: `hydra.sweeper.confirm.refit` defaults to true only if the
95 % Student-t CI of the paired difference in test F1 (refit minus winner, same seed) lies above
0 on both sets; otherwise it stays false (opt-in).

Prints one JSON line per (data set, seed), appended to benchmarks/results.jsonl with
"bench": "refit", and Markdown tables (`--markdown FILE` also writes them).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import textsets  # noqa: E402  (benchmarks/textsets.py)
from paired import paired  # noqa: E402  (benchmarks/paired.py: mean and 95% t CI)

EXPERIMENT = "bench"


def sweep(a: argparse.Namespace, data: str, seed: int, wd: Path, cache: Path) -> float:
    """One sweep with confirmation and refit; its wall time."""
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        *textsets.overrides(data),
        f"hydra.sweeper.n_trials={a.trials}",
        f"hydra.sweeper.confirm.top_k={a.top}",
        f"hydra.sweeper.confirm.seeds={a.confirm_seeds}",
        "hydra.sweeper.confirm.refit=true",
        f"hydra.sweeper.seed={seed}",
        f"trainer.seed={seed}",
        f"tracking.experiment={EXPERIMENT}",
        *a.set,
    ]
    env = {**os.environ, "SWEEP_CACHE_DIR": str(cache), "CI": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    with open(wd / "output.log", "w") as out:
        proc = subprocess.run(cmd, cwd=wd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the sweep failed ({proc.returncode}); see {wd / 'output.log'}")
    return wall


def served_f1(uri: str, data: str) -> dict[str, float]:
    """The champion (the refit) scored on the test split by the served model, as the sweep
    scores its winner (sweep.search.confirm.test_metrics)."""
    import mlflow

    from sweep.search.confirm import test_metrics
    from sweep.train import data as data_mod

    d = {"name": "files", **dict(_kv(o) for o in _data_keys(data))}
    raw = data_mod.load_raw(d)
    test = data_mod.load_test(d, raw.label_names)
    mlflow.set_tracking_uri(uri)
    path = mlflow.artifacts.download_artifacts(f"models:/{EXPERIMENT}@champion")
    model_dir = next(p.parent for p in Path(path).rglob("serving.json"))
    return test_metrics(str(model_dir), test, data_mod.positive_index(raw.label_names))


def _data_keys(data: str) -> list[str]:
    return [o for o in textsets.overrides(data) if o.startswith("data.")]


def _kv(override: str) -> tuple[str, str]:
    key, value = override.split("=", 1)
    return key.removeprefix("data."), value


def one(a: argparse.Namespace, data: str, seed: int, cache: Path) -> dict:
    from sweep.search.refit import train_examples
    from sweep.track import tracking

    with tempfile.TemporaryDirectory(prefix="refit-bench-") as tmp:
        wd = Path(tmp)
        wall = sweep(a, data, seed, wd, cache)
        uri = f"sqlite:///{wd / 'mlflow.db'}"
        client = tracking.client(uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([exp.experiment_id], max_results=5000)
        (winner,) = [r for r in runs if r.data.tags.get("sweep.winner") == "true"]
        (refit,) = [r for r in runs if r.data.tags.get("sweep.role") == "refit"]
        assert refit.data.tags["sweep.refit_of"] == winner.info.run_id
        served = served_f1(uri, data)
        champion = client.get_model_version_by_alias(EXPERIMENT, "champion")
        assert champion.run_id == refit.info.run_id
    w, r = winner.data.metrics, refit.data.metrics
    return {
        "bench": "refit",
        "data": data,
        "seed": seed,
        "trials": a.trials,
        "wall_s": round(wall, 1),
        "refit_s": round((refit.info.end_time - refit.info.start_time) / 1000, 1),
        "winner_trial": int(winner.data.tags["sweep.confirm.trial"]),
        "winner_eval_f1": round(w["eval_f1"], 4),
        "winner_test_f1": round(w["test_f1"], 4),
        "winner_test_accuracy": round(w["test_accuracy"], 4),
        "winner_steps": int(winner.data.tags["sweep.steps"]),
        "winner_examples": train_examples(winner),
        "refit_test_f1": round(served["test_f1"], 4),
        "refit_test_accuracy": round(served["test_accuracy"], 4),
        "refit_test_f1_in_run": round(r["test_f1"], 4),
        "refit_steps": int(refit.data.tags["sweep.steps"]),
        "refit_examples": train_examples(refit),
    }


def mean_sd(values: list[float], digits: int = 4) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def tables(rows: list[dict]) -> str:
    out = []
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = sorted((r for r in rows if r["data"] == data), key=lambda r: r["seed"])
        col = {k: [r[k] for r in mine] for k in mine[0] if isinstance(mine[0][k], int | float)}
        m, lo, hi = paired(col["winner_test_f1"], col["refit_test_f1"])
        ma, loa, hia = paired(col["winner_test_accuracy"], col["refit_test_accuracy"])
        out += [
            f"**{data}**, {len(mine)} seeds ({mine[0]['seed']}..{mine[-1]['seed']}), "
            f"{mine[0]['trials']} trials a sweep:",
            "",
            "| | winner | refit |",
            "|---|---|---|",
            f"| training examples | {mean_sd(col['winner_examples'], 0)} "
            f"| {mean_sd(col['refit_examples'], 0)} |",
            f"| steps | {mean_sd(col['winner_steps'], 0)} | {mean_sd(col['refit_steps'], 0)} |",
            f"| test F1 (served, fp32) | {mean_sd(col['winner_test_f1'])} "
            f"| {mean_sd(col['refit_test_f1'])} |",
            f"| test accuracy (served, fp32) | {mean_sd(col['winner_test_accuracy'])} "
            f"| {mean_sd(col['refit_test_accuracy'])} |",
            f"| test F1 of the refit run's own evaluation | - "
            f"| {mean_sd(col['refit_test_f1_in_run'])} |",
            f"| sweep wall time (s), refit run (s) | {mean_sd(col['wall_s'], 1)} "
            f"| {mean_sd(col['refit_s'], 1)} |",
            "",
            f"test F1 refit - winner: {m:+.4f} [95 % CI {lo:+.4f}, {hi:+.4f}]; test accuracy: "
            f"{ma:+.4f} [{loa:+.4f}, {hia:+.4f}]",
            "",
            "| seed | winner trial | winner eval F1 | winner test F1 | refit test F1 | difference "
            "| refit in-run F1 | wall (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {r['seed']} | {r['winner_trial']} | {r['winner_eval_f1']:.4f} "
            f"| {r['winner_test_f1']:.4f} | {r['refit_test_f1']:.4f} "
            f"| {r['refit_test_f1'] - r['winner_test_f1']:+.4f} | {r['refit_test_f1_in_run']:.4f} "
            f"| {r['wall_s']:.0f} |"
            for r in mine
        ]
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", choices=textsets.NAMES, default=["sentences"])
    ap.add_argument("--seeds", nargs="+", type=int, default=list(range(8)))
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--confirm-seeds", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="another override, repeatable")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="refit-cache-") as cache:
        for seed in a.seeds:  # the data sets in turn, seed by seed: equal seeds if stopped early
            for data in a.data:
                row = {**one(a, data, seed, Path(cache) / data), "set": a.set}
                rows.append(row)
                line = json.dumps({**meta, **row})
                print(line, flush=True)
                with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
                    f.write(line + "\n")
    md = tables(rows)
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md)


if __name__ == "__main__":
    main()
