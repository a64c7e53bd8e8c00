"""One fine-tuning run end to end: `python train.py` as a subprocess, read back from MLflow.

.venv/bin/python -m pytest tests/test_train.py
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    TINY,
    compose,
    mlflow_client,
    run_train,
    runs_of,
    start_train,
    wait_for_metric,
)

from sweep.train.data import load_raw
from sweep.train.loop import run_training


def test_single_run_writes_metrics_params_tags_and_config(workdir):
    proc = run_train([*TINY, "optimizer.lr=3e-4", "scheduler=cosine"], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (workdir / "mlflow.db").exists() and (workdir / "mlartifacts").is_dir()
    assert not (workdir / "mlruns").exists()
    client = mlflow_client(workdir)
    (run,) = runs_of(client, "tiny-synthetic")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tiny lr=0.0003 cosine"
    # metrics with step = global step: 160 samples / 16 = 10 steps, eval every 5 steps
    for key in ("train_loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_f1"):
        assert key in run.data.metrics, key
    evals = client.get_metric_history(run.info.run_id, "eval_f1")
    assert [m.step for m in evals] == [5, 10]
    lrs = client.get_metric_history(run.info.run_id, "learning_rate")
    assert lrs[0].value > lrs[-1].value  # cosine decays
    # params: the resolved config, flattened with dots
    p = run.data.params
    assert p["optimizer.lr"] == "0.0003" and p["scheduler.name"] == "cosine"
    assert p["model.name"] == "tiny" and p["trainer.seed"] == "42"
    assert p["tracking.experiment"] == "tiny-synthetic"
    # trainer.precision=auto (the default) is logged as what it became on this machine
    assert p["trainer.precision"] == native_precision()
    # tags: environment and data
    t = run.data.tags
    assert len(t["sweep.git_commit"]) == 40 and t["sweep.git_dirty"] in ("true", "false")
    assert t["sweep.version.transformers"] and t["sweep.version.torch"]
    # the fingerprint of exactly the data this run trained on (16 hex digits)
    data_cfg = compose([x for x in TINY if not x.startswith("hydra.")]).data
    assert t["sweep.data_fingerprint"] == load_raw(data_cfg).fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", t["sweep.data_fingerprint"])
    assert "optimizer.lr=3e-4" in t["sweep.overrides"]
    # config.yaml: the fully resolved config
    path = client.download_artifacts(run.info.run_id, "config.yaml", str(workdir))
    logged = yaml.safe_load(Path(path).read_text())
    assert (
        logged["optimizer"]["lr"] == 3e-4 and logged["tracking"]["experiment"] == "tiny-synthetic"
    )
    assert logged["scheduler"]["name"] == "cosine"
    assert logged["trainer"]["precision"] == native_precision()


def native_precision() -> str:
    """What trainer.precision=auto means here: bf16 on a CPU with native bf16 (no GPU in tests)."""
    flags = set()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":")[1].split())
                break
    return "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"


def test_bf16_on_cpu_trains_in_bf16_and_differs_from_fp32(workdir):
    # trainer.precision=bf16 with device=auto on a machine without a GPU used to stop in
    # TrainingArguments ("Your setup doesn't support bf16/gpu"): it now autocasts on the CPU
    base = [*TINY, "tracking=none", "optimizer.lr=1e-3"]
    fp32 = run_training(compose([*base, "trainer.precision=fp32"]))
    bf16 = run_training(compose([*base, "trainer.precision=bf16"]))
    assert fp32.steps == bf16.steps == 10
    assert fp32.history != bf16.history  # the precision really changed the arithmetic
    again = run_training(compose([*base, "trainer.precision=bf16"]))
    assert again.history == bf16.history  # and bf16 on the CPU is still deterministic


def test_same_seed_same_metrics_on_cpu(workdir):
    cfg = compose([*TINY, "tracking=none", "optimizer.lr=1e-3"])
    a = run_training(cfg)
    b = run_training(cfg)
    assert a.history == b.history and a.objective == b.objective
    c = run_training(compose([*TINY, "tracking=none", "optimizer.lr=1e-3", "trainer.seed=7"]))
    assert c.history != a.history


def test_objective_at_best_and_final(workdir):
    cfg = compose([*TINY, "tracking=none", "trainer.objective=eval_loss", "optimizer.lr=1e-3"])
    final = run_training(cfg)
    cfg.trainer.objective_at = "best"
    best = run_training(cfg)
    losses = [h["eval_loss"] for h in final.history]
    assert final.objective == losses[-1] and best.objective == min(losses)


def test_ctrl_c_ends_the_run_killed_and_keeps_its_metrics(workdir):
    args = [*TINY, "data.train_size=2000", "trainer.max_steps=2000", "trainer.eval_every=50"]
    proc = start_train(args, workdir)
    client, run = wait_for_metric(workdir, proc, "tiny-synthetic")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED"
    # eval_f1 was in, so step 50 was reached: every train_loss point up to it (logged every 5
    # steps) is kept
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train_loss")}
    assert set(range(5, 51, 5)) <= steps, sorted(steps)
    assert "interrupted" in (workdir / "train.log").read_text()


@pytest.mark.parametrize("store_call", ["create_run", "set_terminated"])
def test_a_ctrl_c_while_the_run_is_created_or_ended_leaves_it_killed(
    tmp_path, monkeypatch, store_call
):
    """A Ctrl-C during one SQLite write is held back until the write returns (a sweep's
    confirmation run was once left RUNNING: the Ctrl-C came as its create_run returned, before
    anything could close it). Here the real store, with a Ctrl-C sent from inside one call."""
    from sweep.track import tracking
    from sweep.train.runner import run_job

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real = tracking.client(uri)
    sent = []

    class CtrlCInside:
        def __getattr__(self, name):
            attr = getattr(real, name)
            if name != store_call:
                return attr

            def call(*args, **kwargs):
                out = attr(*args, **kwargs)
                if not sent:
                    sent.append(name)
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.2)  # the default handler would have raised in here
                return out

            return call

    monkeypatch.setattr(tracking, "client", lambda _uri: CtrlCInside())
    cfg = compose([*TINY, f"tracking.uri={uri}", "trainer.max_steps=5"])
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg)
    assert sent == [store_call]
    (run,) = runs_of(real, "tiny-synthetic")
    assert run.info.status == "KILLED"
    if store_call == "set_terminated":  # it trained to the end, but its outcome never returned
        assert run.data.tags["sweep.steps"] == "5"


def test_checkpointed_run_resumes_after_a_kill(workdir):
    args = [
        *TINY,
        "data.train_size=800",
        # 200 steps (~5 s) so the kill lands mid-run: 60 tiny steps could all finish, and save
        # checkpoint-60, between two polls (a resume from the last step then adds one)
        "trainer.max_steps=200",
        "trainer.checkpoint_every=10",
        "trainer.eval_every=100",
    ]
    proc = start_train(args, workdir)
    ckpt_root = workdir / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt_root.glob("*/checkpoint-20")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(ckpt_root.glob("*/checkpoint-*")), "no checkpoint was written"
    done = run_train(args, workdir)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "resuming from" in done.stdout
    client = mlflow_client(workdir)
    resumed = [r for r in runs_of(client, "tiny-synthetic") if "sweep.resumed_from" in r.data.tags]
    assert len(resumed) == 1 and resumed[0].data.tags["sweep.steps"] == "200"


@pytest.mark.parametrize("state", [None, "", '{"global_step": 30, "log_hist'])
def test_a_checkpoint_cut_off_mid_save_is_dropped_and_the_one_before_resumes(workdir, state):
    """What SIGKILL during a save leaves: the newest checkpoint's trainer_state.json (Trainer
    writes it last) missing, empty (seen in CI) or cut off. Resuming from it would fail; the run
    resumes from the last whole one instead."""
    from sweep.train.loop import latest_complete_checkpoints

    out = workdir / "checkpoints" / "abc"
    for n in (10, 20, 30):
        (out / f"checkpoint-{n}").mkdir(parents=True)
        (out / f"checkpoint-{n}" / "model.safetensors").write_bytes(b"x")
    for n in (10, 20):
        (out / f"checkpoint-{n}" / "trainer_state.json").write_text(f'{{"global_step": {n}}}\n')
    if state is not None:
        (out / "checkpoint-30" / "trainer_state.json").write_text(state)
    (out / "checkpoint-old").mkdir()  # not Trainer's: left alone
    assert latest_complete_checkpoints(out) == [out / "checkpoint-10", out / "checkpoint-20"]
    assert not (out / "checkpoint-30").exists()
    assert (out / "checkpoint-old").is_dir()


def test_save_model_logs_the_final_model(workdir):
    proc = run_train([*TINY, "trainer.save_model=true"], workdir)
    assert proc.returncode == 0, proc.stdout[-2000:]
    client = mlflow_client(workdir)
    (run,) = runs_of(client, "tiny-synthetic")
    files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert "model/config.json" in files and "model/model.safetensors" in files
    assert "model/tokenizer.json" in files or "model/vocab.txt" in files


@pytest.mark.slow
def test_files_data_run(workdir):
    import csv

    rows = [("a truly wonderful film", "pos"), ("dull and far too long", "neg")] * 40
    for name, part in (("train.csv", rows), ("valid.csv", rows[:20])):
        with open(workdir / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["review", "sentiment"])
            w.writerows(part)
    proc = run_train(
        [
            "model=tiny",
            "data=files",
            "data.train_file=train.csv",
            "data.validation_file=valid.csv",
            "data.text_column=review",
            "data.label_column=sentiment",
            "trainer.eval_every=5",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    (run,) = runs_of(mlflow_client(workdir), "tiny-files")
    assert run.data.tags["sweep.data_source"].startswith("files")
