"""This project's sweep against transformers' `Trainer.hyperparameter_search(backend="optuna")`.

    .venv/bin/python benchmarks/hpsearch.py                      # 4 arms x 3 seeds, 8 trials each
    .venv/bin/python benchmarks/hpsearch.py --seeds 0 --trials 4 # a quick look
    .venv/bin/python benchmarks/hpsearch.py --data files --train-file reviews.csv \\
        --text-column review --label-column sentiment

Same machine, data, model, search space and trial budget for every arm (the baselines' ranges are
read from conf/search/lr_schedule.yaml, the config `ours` runs):

- `ours`: `python train.py -m`, the default search as a user runs it: lr, schedule, warm-up,
  polynomial power; TPE with 4 start-up trials, median pruning after each evaluation every 16
  steps (the pruner's evaluations on a fixed 64-sample subset, the final one on all 200),
  bucketed batches (the default trainer.batch_order), pretrained weights read once per
  process, and `n_workers=auto`: one worker process per core (2 here), trials side by side, one
  torch thread each.
- `hf_default`: `Trainer.hyperparameter_search` as its documentation shows it: `model_init`
  loading the model per trial, evaluation once per epoch, the tokenizer padding each batch
  dynamically, default eval batch size, Optuna's defaults (a seeded TPE sampler).
- `hf_tuned`: the same, tuned as far as its API allows, with our default search's settings read
  from conf/search/lr_schedule.yaml: the same TPE start-up and median pruner passed through,
  evaluation every 16 steps with the same eval batch size, and length-grouped batches. (Its
  objective comes from its last evaluation, so its evaluations cannot use a subset.)
- `hf_tuned_bf16`: `hf_tuned` with `bf16=True`, what `ours` gets from `trainer.precision=auto` on
  a CPU with native bf16 (AVX512-BF16 / AMX). Not one of the issue's two baselines: it is there
  so the table shows how much of the difference is bf16 and how much the rest.
- `ours_equal_time`: ours with the wall time `hf_default` took on the same seed (run first), and
  with confirmation on (the default search's top 2 x 2 new seeds): `hydra.sweeper.timeout` is
  that wall time less a confirmation allowance (`--confirm-allowance`, a share of it), the trial
  budget unbounded; the winner is the confirmed one, scored on the test split. Against it,
  `hf_default`'s best trial is trained again with its hyperparameters and scored on the same test
  split; that retraining is timed apart (`retrain_s`) and NOT counted in `hf_default`'s wall time
  (its search keeps no model, so a user would have to pay it: the comparison favours it).

The `ours` arm measures the search alone: its confirmation stage is off (`confirm.top_k=0`).

Data and sizes are those of the default sweep (generated reviews, 640 training / 200 evaluation
samples, batch 8: 80 steps per trial). Arms run one after another in a rotating order per seed,
each in a fresh directory with a cold tokenization cache. Every arm's Trainer carries
`sweep.train.perf.PerfCallback`, so step time, evaluation time, tokens and padding are measured
the same way; a trial's overhead is its Optuna duration minus its step and evaluation time.

Prints one JSON line per (arm, seed), appended to benchmarks/results.jsonl, and a Markdown table
(mean and standard deviation over seeds) to paste into BENCHMARKS.md (`--markdown FILE` writes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
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

ARMS = ("ours", "hf_default", "hf_tuned", "hf_tuned_bf16", "ours_equal_time")


# --------------------------------------------------------------------------- the arms (children)


def data_overrides(a: argparse.Namespace) -> list[str]:
    if a.data in textsets.NAMES:  # synthetic, or a real set in ../shared/data
        return textsets.overrides(a.data)
    out = [
        "data=files",
        f"data.train_file={Path(a.train_file).resolve()}",
        f"data.text_column={a.text_column}",
        f"data.label_column={a.label_column}",
    ]
    if a.validation_file:
        out.append(f"data.validation_file={Path(a.validation_file).resolve()}")
    return out


def sizing(a: argparse.Namespace) -> list[str]:
    return [
        f"data.max_train_samples={a.max_train}",
        f"data.max_eval_samples={a.max_eval}",
        f"trainer.train_batch_size={a.batch_size}",
        f"trainer.eval_every={a.eval_every}",
    ]


def summarize(trials: list[dict], wall: float, peak_kb: int, direction: str) -> dict:
    """Totals over an arm's trials (each: state, value, seconds and its perf.* numbers)."""
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    best = (max if direction == "maximize" else min)((t["value"] for t in done), default=None)
    step_s = sum(t.get("perf.step_seconds", 0.0) for t in trials)
    tokens = sum(t.get("perf.train_tokens", 0.0) for t in trials)
    batch_tokens = sum(t.get("perf.batch_tokens", 0.0) for t in trials)
    overheads = [
        t["seconds"] - t.get("perf.step_seconds", 0.0) - t.get("perf.eval_seconds", 0.0)
        for t in trials
        if t.get("seconds") is not None
    ]
    starts = [t["start"] for t in trials if t.get("start") is not None]
    ends = [t["end"] for t in trials if t.get("end") is not None]
    span = max(ends) - min(starts) if starts and ends else None
    return {
        "wall_s": round(wall, 1),
        "best_objective": best,
        "trials": len(trials),
        "pruned": sum(t["state"] == "PRUNED" for t in trials),
        "failed": sum(t["state"] == "FAIL" for t in trials),
        "optimisation_steps": int(sum(t.get("perf.steps", 0.0) for t in trials)),
        "train_tokens_per_s": round(tokens / step_s, 1) if step_s else None,
        "padded_share": round(1 - tokens / batch_tokens, 4) if batch_tokens else None,
        "step_seconds": round(step_s, 1),
        "eval_seconds": round(sum(t.get("perf.eval_seconds", 0.0) for t in trials), 1),
        # steady state: the median; the first trial also pays one-off imports and loads
        "trial_overhead_s": round(statistics.median(overheads), 2) if overheads else None,
        "first_trial_overhead_s": round(overheads[0], 2) if overheads else None,
        # before the first trial starts and after the last one ends (trials may run side by side)
        "outside_trials_s": round(wall - span, 1) if span is not None else None,
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def span_of(t) -> dict:
    """A trial's start and end (epoch seconds), when it has both."""
    if not (t.datetime_start and t.datetime_complete):
        return {}
    return {"start": t.datetime_start.timestamp(), "end": t.datetime_complete.timestamp()}


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants now (Linux /proc), in kB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(ln.split()[1] for ln in status.splitlines() if ln[:6] == "VmRSS:"))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def arm_ours(a: argparse.Namespace, seed: int, wd: Path) -> dict:
    import optuna

    from sweep.search.study import open_storage
    from sweep.track import tracking

    if a.timeout:  # ours_equal_time: the clock decides, then the confirmation stage
        budget = ["hydra.sweeper.n_trials=10000", f"hydra.sweeper.timeout={a.timeout}"]
    else:  # ours: the search alone, n trials
        budget = [f"hydra.sweeper.n_trials={a.trials}", "hydra.sweeper.confirm.top_k=0"]
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        *data_overrides(a),
        *sizing(a),
        *budget,
        f"hydra.sweeper.seed={seed}",
        f"trainer.seed={seed}",
        "tracking.experiment=bench",
        *a.set,
    ]
    env = {**os.environ, "SWEEP_CACHE_DIR": str(wd / "cache"), "CI": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    with open(wd / "output.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=wd, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak_kb = 0  # of all its worker processes together, sampled
        while proc.poll() is None:
            peak_kb = max(peak_kb, tree_rss_kb(proc.pid))
            time.sleep(0.25)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"ours failed ({proc.returncode}); see {wd / 'output.log'}")
    peak_kb = max(peak_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)

    storage = open_storage(f"journal://{wd / '.sweep' / 'bench.journal'}")
    (name,) = optuna.study.get_all_study_names(storage=storage)  # bench-<identity>
    study = optuna.load_study(study_name=name, storage=storage)
    client = tracking.client(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench")
    perf, winner = {}, {}
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        n = run.data.tags.get("optuna.trial_number")
        if n is not None:
            perf[int(n)] = {k: v for k, v in run.data.metrics.items() if k.startswith("perf.")}
        if run.data.tags.get("sweep.winner") == "true":
            winner = {
                "winner_eval_f1": run.data.metrics.get("eval_f1"),
                "test_f1": run.data.metrics.get("test_f1"),
                "test_accuracy": run.data.metrics.get("test_accuracy"),
            }
    trials = []
    for t in study.trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        trials.append(
            {
                "state": t.state.name,
                "value": t.value,
                "seconds": seconds,
                **span_of(t),
                **perf.get(t.number, {}),
            }
        )
    return {**summarize(trials, wall, peak_kb, "maximize"), **winner}


def arm_hf(a: argparse.Namespace, seed: int, wd: Path, tuned: bool, bf16: bool = False) -> dict:
    start = time.perf_counter()
    import optuna
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from sweep.core.config import register_configs
    from sweep.search.sweeper import build_space
    from sweep.train import data as data_mod
    from sweep.train import model as model_mod
    from sweep.train.loop import compute_metrics
    from sweep.train.perf import PerfCallback

    hf_logging.set_verbosity_error()
    os.environ["SWEEP_CACHE_DIR"] = str(wd / "cache")
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", [*data_overrides(a), *sizing(a)])
    raw = data_mod.load_raw(cfg.data)  # the very same reviews (or file rows) as `ours`
    n_labels = len(raw.label_names)
    weights = model_mod.weights_location(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_mod.tokenizer_location(cfg.model))

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=cfg.data.max_length)

    train = raw.train.map(tokenize, batched=True).rename_column("label", "labels")
    evals = raw.validation.map(tokenize, batched=True).rename_column("label", "labels")
    if tuned:
        train = train.map(lambda b: {"length": [len(x) for x in b["input_ids"]]}, batched=True)

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(weights, num_labels=n_labels)

    sw = OmegaConf.load(ROOT / "conf" / "search" / "lr_schedule.yaml").hydra.sweeper
    search = sw.params
    args = TrainingArguments(
        output_dir=str(wd / "hf"),
        num_train_epochs=cfg.trainer.epochs,
        per_device_train_batch_size=a.batch_size,
        # tuned: our default search's eval batch; 8 is Trainer's default
        per_device_eval_batch_size=search["trainer.eval_batch_size"] if tuned else 8,
        eval_strategy="steps" if tuned else "epoch",
        eval_steps=a.eval_every if tuned else None,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        weight_decay=cfg.optimizer.weight_decay,  # as `ours` (AdamW, no decay on bias/LayerNorm)
        # a float, or _hp_search_setup casts each trial's warm-up ratio to int(ratio) = 0
        warmup_steps=0.0,
        train_sampling_strategy="group_by_length" if tuned else "random",
        use_cpu=True,
        bf16=bf16,
    )

    # the very ranges of our default search, read from its config
    dist = build_space(dict(search), [], {})[0].distributions
    lr_d, warmup_d, power_d = (
        dist[k] for k in ("optimizer.lr", "scheduler.warmup_ratio", "scheduler.power")
    )
    schedules = dist["scheduler"].choices  # our names are transformers' scheduler types too

    def hp_space(trial):
        lr = trial.suggest_float("learning_rate", lr_d.low, lr_d.high, log=lr_d.log)
        schedule = trial.suggest_categorical("lr_scheduler_type", schedules)
        space = {"learning_rate": lr, "lr_scheduler_type": schedule, "warmup_steps": 0.0}
        space["lr_scheduler_kwargs"] = {}  # else a polynomial `power` leaks into later trials
        if schedule != "constant":
            space["warmup_steps"] = trial.suggest_float("warmup_ratio", warmup_d.low, warmup_d.high)
        if schedule == "polynomial":
            power = trial.suggest_float("power", power_d.low, power_d.high)
            space["lr_scheduler_kwargs"] = {"power": power, "lr_end": 0.0}
        return space

    perf = PerfCallback()
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,  # dynamic padding per batch (DataCollatorWithPadding)
        compute_metrics=compute_metrics,
        callbacks=[perf],
    )
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(wd / "hf.journal"))
    )
    extra = {}
    if tuned:  # the TPE start-up and median pruner of our default search, passed through
        assert sw.sampler == "tpe" and sw.pruner == "median", "keep hf_tuned's arms in step"
        extra["sampler"] = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=sw.n_startup_trials
        )
        extra["pruner"] = optuna.pruners.MedianPruner(
            n_startup_trials=sw.pruner_startup_trials, n_warmup_steps=sw.pruner_warmup_steps
        )
    else:
        extra["sampler"] = optuna.samplers.TPESampler(seed=seed)
    best_run = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics["eval_f1"],
        n_trials=a.trials,
        direction="maximize",
        backend="optuna",
        storage=storage,
        study_name="hf",
        **extra,
    )
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    study = optuna.load_study(study_name="hf", storage=storage)
    trials = []
    for t, p in zip(study.trials, perf.runs, strict=True):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        trials.append(
            {"state": t.state.name, "value": t.value, "seconds": seconds, **span_of(t), **p}
        )
    result = summarize(trials, wall, peak_kb, "maximize")
    test = data_mod.load_test(cfg.data, raw.label_names) if a.test else None
    if test is not None:  # its best trial again, scored on the test split (timed apart)
        t0 = time.perf_counter()
        space = hp_space(optuna.trial.FixedTrial(best_run.hyperparameters))
        again = Trainer(
            model_init=model_init,
            args=dataclasses.replace(args, **space),
            train_dataset=train,
            eval_dataset=evals,
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
        )
        again.train()
        ev = again.evaluate()
        tests = test.data.map(tokenize, batched=True).rename_column("label", "labels")
        scored = again.evaluate(tests, metric_key_prefix="test")
        result.update(
            {
                "winner_eval_f1": ev["eval_f1"],
                "test_f1": scored["test_f1"],
                "test_accuracy": scored["test_accuracy"],
                "retrain_s": round(time.perf_counter() - t0, 1),
            }
        )
    return result


def run_arm(a: argparse.Namespace) -> None:
    wd = Path(a.workdir)
    if a.arm.startswith("ours"):
        result = arm_ours(a, a.seed, wd)
    else:
        tuned = a.arm.startswith("hf_tuned")
        result = arm_hf(a, a.seed, wd, tuned=tuned, bf16=a.arm == "hf_tuned_bf16")
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- the driver


def child(a: argparse.Namespace, arm: str, seed: int, timeout: float | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{arm}-") as tmp:
        cmd = [sys.executable, __file__, "--arm", arm, "--seed", str(seed), "--workdir", tmp]
        cmd += [
            "--trials", str(a.trials), "--max-train", str(a.max_train),
            "--max-eval", str(a.max_eval), "--batch-size", str(a.batch_size),
            "--eval-every", str(a.eval_every), "--data", a.data,
        ]  # fmt: skip
        cmd += [f"--set={o}" for o in a.set]
        if timeout:
            cmd += ["--timeout", str(timeout)]
        if a.test:
            cmd += ["--test"]
        if a.data == "files":
            cmd += ["--train-file", str(Path(a.train_file).resolve())]
            cmd += ["--text-column", a.text_column, "--label-column", a.label_column]
            if a.validation_file:
                cmd += ["--validation-file", str(Path(a.validation_file).resolve())]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CI": "1"}
        env["TRANSFORMERS_OFFLINE"] = "1"
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stdout + proc.stderr)[-3000:]
            sys.exit(f"{arm} seed {seed} failed ({proc.returncode}):\n{tail}")
        return json.loads(lines[-1].removeprefix("RESULT "))


def mean_sd(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    m = statistics.mean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    digits = 3 if abs(m) < 10 else 1
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def table(results: list[dict]) -> str:
    rows = [
        ("wall time (s)", "wall_s"),
        ("best eval_f1", "best_objective"),
        ("optimisation steps", "optimisation_steps"),
        ("trials pruned", "pruned"),
        ("train tokens/s (in steps)", "train_tokens_per_s"),
        ("padded share of train tokens", "padded_share"),
        ("per-trial overhead, median (s)", "trial_overhead_s"),
        ("first trial's overhead (s)", "first_trial_overhead_s"),
        ("time outside trials (s)", "outside_trials_s"),
        ("time in evaluation (s)", "eval_seconds"),
        ("peak RSS (MB)", "peak_rss_mb"),
        ("winner's eval_f1 (confirmed / hf: best trial)", "winner_eval_f1"),
        ("test_f1 of the winner", "test_f1"),
        ("test_accuracy of the winner", "test_accuracy"),
        ("hf: retraining its best trial (s, not in wall time)", "retrain_s"),
    ]
    arms = [arm for arm in ARMS if any(r["arm"] == arm for r in results)]
    out = ["| | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for label, key in rows:
        cells = [mean_sd([r.get(key) for r in results if r["arm"] == arm]) for arm in arms]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    walls = {arm: statistics.mean(r["wall_s"] for r in results if r["arm"] == arm) for arm in arms}
    if "ours" in walls:
        for base in ARMS[1:4]:
            if base in walls:
                out.append(f"\nwall time ours / {base}: {walls['ours'] / walls[base]:.2f}")
                out.append(f"best eval_f1 ours - {base}: {paired_diff(results, base)}")
    if "ours_equal_time" in walls and "hf_default" in walls:
        ratio = walls["ours_equal_time"] / walls["hf_default"]
        out.append(f"\nwall time ours_equal_time / hf_default: {ratio:.2f}")
        for key in ("test_f1", "winner_eval_f1"):
            diff = paired_diff(results, "hf_default", "ours_equal_time", key)
            out.append(f"{key} ours_equal_time - hf_default: {diff}")
        out.append(per_seed(results))
    return "\n".join(out)


def per_seed(results: list[dict]) -> str:
    """Every seed of the equal-wall-time comparison, side by side."""
    by = {(r["arm"], r["seed"]): r for r in results}
    rows = [
        "\n| seed | hf wall (s) | ours wall (s) | hf test_f1 | ours test_f1 | difference "
        "| hf best eval_f1 | ours winner eval_f1 (confirmed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed in sorted({r["seed"] for r in results}):
        h, o = by.get(("hf_default", seed)), by.get(("ours_equal_time", seed))
        if not (h and o and h.get("test_f1") is not None and o.get("test_f1") is not None):
            continue
        rows.append(
            f"| {seed} | {h['wall_s']} | {o['wall_s']} | {h['test_f1']:.4f} | "
            f"{o['test_f1']:.4f} | {o['test_f1'] - h['test_f1']:+.4f} | "
            f"{h['winner_eval_f1']:.4f} | {o['winner_eval_f1']:.4f} |"
        )
    return "\n".join(rows)


def paired_diff(
    results: list[dict], base: str, arm: str = "ours", key: str = "best_objective"
) -> str:
    """Mean over seeds of (arm - base) in `key`, with its 95% confidence interval
    (benchmarks/paired.py); each seed's two arms ran the same sampler seed on the same data."""
    from paired import paired

    by = {(r["arm"], r["seed"]): r.get(key) for r in results if r.get(key) is not None}
    seeds = sorted(s for s in {r["seed"] for r in results} if (arm, s) in by and (base, s) in by)
    if not seeds:
        return "-"
    mean, lo, hi = paired([by[(base, s)] for s in seeds], [by[(arm, s)] for s in seeds])
    if len(seeds) < 2:
        return f"{mean:+.4f} (1 seed)"
    return f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] over {len(seeds)} seeds"


def recorded(a: argparse.Namespace) -> list[dict]:
    """The lines of benchmarks/results.jsonl that --table-since selects, the latest per
    (arm, seed)."""
    latest: dict[tuple, dict] = {}
    for text in (ROOT / "benchmarks" / "results.jsonl").read_text().splitlines():
        r = json.loads(text)
        if (
            r.get("benchmark") == "hpsearch"
            and r["date"] >= a.table_since
            and r.get("data", "synthetic") == a.data
            and r.get("n_trials") == a.trials
            and r.get("set", []) == a.set
            and r["arm"] in a.arms
            and r["seed"] in a.seeds
        ):
            latest[(r["arm"], r["seed"])] = r  # the file is in date order
    return list(latest.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=8, help="trial budget of every arm")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--data", choices=(*textsets.NAMES, "files"), default="synthetic")
    ap.add_argument("--train-file")
    ap.add_argument("--validation-file")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--max-train", type=int, default=640)
    ap.add_argument("--max-eval", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=16)
    ap.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for our arm (repeatable), e.g. hydra.sweeper.n_startup_trials=8",
    )
    ap.add_argument(
        "--test",
        action="store_true",
        help="score each arm's winner on the data's test split (hf arms: their best trial "
        "trained again); implied by the arm ours_equal_time",
    )
    ap.add_argument(
        "--confirm-allowance",
        type=float,
        default=0.25,
        help="ours_equal_time: the share of hf_default's wall time left for ours' confirmation "
        "stage after its search's timeout (default 0.25)",
    )
    ap.add_argument(
        "--table-since",
        metavar="DATE",
        help="run nothing: make the table from benchmarks/results.jsonl, from the lines of "
        "this benchmark dated DATE (e.g. 2026-12-04T22:35) or later with the same --data, "
        "--trials and --set, for the given --arms and --seeds (a seed's latest line per arm); "
        "for a protocol whose seeds ran in more than one sitting",
    )
    ap.add_argument("--timeout", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.data == "files" and not a.train_file:
        ap.error("--data files needs --train-file")
    if a.arm:
        run_arm(a)
        return

    if a.table_since:
        results = recorded(a)
        if not results:
            sys.exit(f"no line in benchmarks/results.jsonl matches (since {a.table_since})")
        print(table(results))
        return
    if "ours_equal_time" in a.arms:
        a.test = True
        if "hf_default" not in a.arms:
            ap.error("the arm ours_equal_time needs hf_default (it gets its wall time)")
    results = []
    for i, seed in enumerate(a.seeds):
        arms = [x for x in a.arms if x != "ours_equal_time"]
        order = arms[i % len(arms) :] + arms[: i % len(arms)]  # alternate who goes first
        if "ours_equal_time" in a.arms:  # after hf_default, whose wall time it gets
            order.append("ours_equal_time")
        walls = {}
        for arm in order:
            timeout = None
            if arm == "ours_equal_time":
                timeout = round(walls["hf_default"] * (1 - a.confirm_allowance), 1)
            r = child(a, arm, seed, timeout)
            walls[arm] = r["wall_s"]
            line = {
                "benchmark": "hpsearch",
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "arm": arm,
                "seed": seed,
                "n_trials": a.trials,
                "data": a.data,
                "set": a.set,
                "timeout_s": timeout,
                **r,
            }
            print(json.dumps(line), flush=True)
            with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            results.append(line)
    md = table(results)
    print(md)
    if a.markdown:
        Path(a.markdown).write_text(md + "\n")


if __name__ == "__main__":
    main()
