"""benchmarks/gpu.py, the one-call GPU benchmark of issue 28, without a GPU: its arithmetic (FLOPs,
MFU, the steady trials-per-hour rate, the targets, the time guard), its one-line refusal when no
CUDA GPU is visible, and its CPU smoke run end-to-end (every phase at a tiny size, real sweeps).

.venv/bin/python -m pytest tests/test_gpu_bench.py -q -p no:randomly
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "name,peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),  # the SXM part's name in torch
        ("NVIDIA H100 SXM5 80GB", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),  # not the L4
        ("Tesla T4", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_peak_bf16_by_device_name(gpu, name, peak):
    assert gpu.peak_tflops(name) == peak


def test_flops_and_mfu_arithmetic(gpu):
    # 6·P·B·s + 12·L·h·B·s²: P=1000, L=2, h=8, B=4, s=16
    assert gpu.train_flops(1000, 2, 8, 4, 16) == 6 * 1000 * 64 + 12 * 2 * 8 * 4 * 16**2
    # 100 steps of 1 TFLOP in 1 s on a 989 TFLOP/s card
    assert gpu.mfu(1e12, 100, 1.0, 989.0) == pytest.approx(100 / 989)
    assert gpu.mfu(1e12, 100, 1.0, None) is None  # unknown card: no MFU


def test_bert_small_shape_and_its_flops_at_128x256(gpu):
    from transformers import AutoModelForSequenceClassification, BertConfig

    model = AutoModelForSequenceClassification.from_config(
        BertConfig(**gpu.BERT_SMALL, num_labels=2)
    )
    params, layers, hidden = gpu.model_shape(model)
    # per layer: Q, K, V, O (4 x (512² + 512)), the FFN (2 x 512 x 2048 + 2048 + 512), two
    # LayerNorms (2 x 1024); then the pooler (512² + 512) and the classifier (512 x 2 + 2)
    per_layer = 4 * (512 * 512 + 512) + 2 * 512 * 2048 + 2048 + 512 + 2 * 1024
    assert params == 4 * per_layer + 512 * 512 + 512 + 512 * 2 + 2 == 12_873_218
    assert (layers, hidden) == (4, 512)
    flops = gpu.train_flops(params, layers, hidden, 128, 256)
    assert flops == pytest.approx(2.737e12, rel=1e-3)
    # the MFU target at 128 x 256 on an H100 SXM: ~126 steps a second
    assert gpu.mfu(flops, 126, 1.0, 989.0) == pytest.approx(0.3487, rel=1e-3)


def test_steady_rate_counts_the_window_where_every_worker_is_busy_and_warm(gpu):
    # one worker: its first start (or its first trial's end) to its last end
    one = [("a", 0, 10), ("a", 10, 20)]
    assert gpu.steady_rate(one, warmup=0) == (360.0, 20)
    assert gpu.steady_rate(one, warmup=1) == (360.0, 10)
    # worker b starts late (its imports) and a runs on alone at the end: only [5, 15] counts,
    # half of each of a's trials and all of b's: 2 trials in 10 s
    late = [("a", 0, 10), ("a", 10, 20), ("b", 5, 15)]
    assert gpu.steady_rate(late, warmup=0) == (720.0, 10)
    assert gpu.steady_rate(late, warmup=1) == (None, 0.0)  # b has no trial after its first
    # first trials left out: from b's first end (15) to b's last end (25)
    warm = [("a", 0, 10), ("a", 10, 20), ("a", 20, 30), ("b", 5, 15), ("b", 15, 25)]
    assert gpu.steady_rate(warm, warmup=1) == (720.0, 10)
    # workers that never ran at the same time, or nothing at all: no steady rate
    assert gpu.steady_rate([("a", 0, 1), ("b", 2, 3)], warmup=0) == (None, 0.0)
    assert gpu.steady_rate([]) == (None, 0.0)


def test_targets_are_judged_only_on_a_gpu_and_only_when_measured(gpu):
    t = gpu.Targets(smoke=False)
    d = t.as_dict()
    assert d["bert_small_mfu_128x256"] == {"want": ">= 0.35", "got": None, "met": None}
    t.mfu, t.rate_1, t.rate_4 = 0.41, 100.0, 190.0
    d = t.as_dict()
    assert d["bert_small_mfu_128x256"]["met"] is True
    got = d["minilm_trials_per_hour_4_vs_1_per_gpu"]
    assert got == {"want": ">= 2.0x", "got": 1.9, "met": False}
    smoke = gpu.Targets(smoke=True, mfu=0.9).as_dict()["bert_small_mfu_128x256"]
    assert smoke["met"] is None and "not judged" in smoke["note"]


def test_time_guard_gives_each_phase_its_share_and_skips_what_does_not_fit(gpu):
    now = [0.0]
    budget = gpu.Budget(280, clock=lambda: now[0])
    sweep = gpu.Phase("sweep:4", 75, 45)
    assert budget.grant(sweep) == 75
    now[0] = 220.0  # 60 s left: less than the share, more than the floor
    assert budget.grant(sweep) == 60
    now[0] = 250.0  # 30 s left: under the floor
    assert budget.grant(sweep) is None
    plan = gpu.plan(smoke=False)
    assert [p.name for p in plan] == [
        "model:minilm",
        "model:bert_small",
        "sweep:1",
        "sweep:2",
        "sweep:4",
    ]
    assert sum(p.share for p in plan) <= 280  # the shares alone fit the default budget


def test_results_go_under_out_by_default(gpu, monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu.parse_args([]).out == tmp_path / "results.jsonl"
    monkeypatch.delenv("OUT")
    assert gpu.parse_args([]).out == ROOT / "benchmarks" / "results.jsonl"
    assert gpu.parse_args(["--out", "x.jsonl"]).out == Path("x.jsonl")
    with pytest.raises(SystemExit):
        gpu.parse_args(["--phases", "sweep:8"])


def test_sweep_command_uses_the_placement_feature_and_its_own_stores(gpu, tmp_path):
    cmd = gpu.sweep_command(tmp_path, 4, 35, smoke=False)
    assert cmd[1:3] == [str(ROOT / "train.py"), "-m"]
    for want in (
        "hydra.sweeper.gpus=auto",
        "hydra.sweeper.trials_per_gpu=4",
        "hydra.sweeper.timeout=35",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.sweeper.storage=journal://{tmp_path / 'study.journal'}",
    ):
        assert want in cmd
    assert gpu.refusal(cuda=False, smoke=False).startswith("error: no CUDA GPU")
    assert gpu.refusal(cuda=False, smoke=True) is None and gpu.refusal(True, False) is None


def test_refuses_in_one_line_without_a_cuda_gpu(tmp_path):
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on a GPU machine too
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA GPU visible"), proc.stderr
    assert "--cpu-smoke" in lines[0] and not out.exists()


@pytest.mark.slow
def test_cpu_smoke_runs_every_phase_and_writes_its_lines(tmp_path):
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, str(SCRIPT), "--cpu-smoke", "--peak-tflops", "0.5", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    phases = ["model:minilm", "model:bert_small", "sweep:1", "sweep:2", "sweep:4", "summary"]
    assert [r["phase"] for r in lines] == phases
    for r in lines:
        assert r["benchmark"] == "gpu" and r["smoke"] is True and "error" not in r
        assert set(r["targets"]) == {
            "bert_small_mfu_128x256",
            "minilm_trials_per_hour_4_vs_1_per_gpu",
        }
        assert all(t["met"] is None for t in r["targets"].values())  # a CPU is not judged
        assert r["elapsed_s"] > 0
    for r in lines[:2]:
        assert r["precision"] == "bf16 autocast" and r["steps_timed"] == 2
        tokens = r["steps_timed"] * r["batch"] * r["seq"]  # fixed length: no padding
        assert r["tokens_per_s"] == pytest.approx(tokens / r["timed_seconds"], rel=0.02)
        assert r["samples_per_s"] == pytest.approx(r["tokens_per_s"] / r["seq"], abs=0.1)
        assert r["mfu"] == pytest.approx(r["model_tflops_per_s"] / 0.5, rel=1e-3)
        assert "peak_memory_mb" in r
    assert lines[1]["params_non_embedding"] == 12_873_218  # the bert_small shape
    for r, n in zip(lines[2:5], (1, 2, 4), strict=True):
        assert r["trials_per_gpu"] == n and f"hydra.sweeper.trials_per_gpu={n}" in r["overrides"]
        assert r["exit_code"] == 0 and not r["interrupted"]
        assert r["trials"] == r["complete"] == 2
        assert r["trials_per_hour"] > 0 and r["trials_per_hour_wall"] > 0
        assert r["timeout_s"] >= 10
