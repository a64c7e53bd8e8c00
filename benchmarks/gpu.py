"""One GPU, one call, under 5 minutes: model throughput, MFU and memory, and sweep trials per hour.

    .venv/bin/python benchmarks/gpu.py --out "$OUT/results.jsonl"   # on a CUDA machine
    .venv/bin/python benchmarks/gpu.py --cpu-smoke --out /tmp/r.jsonl # every phase, tiny, on a CPU

Phases, in this order (issue 28, "What to measure"):

- `model:minilm`: the packaged MiniLM default (`model=minilm`, offline) at the default batch and
  length (`trainer.train_batch_size` x `data.max_length`);
- `model:bert_small`: a bert_small-shaped BERT, random init from a `BertConfig` (4 layers, hidden
  512, 8 heads, intermediate 2048, vocab 30522), at batch 128 x 256 tokens.
  Each: training steps (forward, backward, fused AdamW) under `torch.autocast(bfloat16)` with SDPA
  attention on fixed-length random token ids (no padding), timed after a warm-up with
  `torch.cuda.synchronize()`: samples/s, tokens/s, MFU and `torch.cuda.max_memory_allocated`.
  The model alone, not the recipe: the sweeps below measure the recipe.
- `sweep:1`, `sweep:2`, `sweep:4`: the default sweep (`python train.py -m`, offline MiniLM) with
  `hydra.sweeper.gpus=auto hydra.sweeper.trials_per_gpu=N`, pinned to the first GPU, each in its
  own temporary directory with its own MLflow SQLite store, journal study and data cache. The
  search alone (`confirm.top_k=0`) and `pruner=none`: pruning would make the rate depend on which
  trials were pruned, and that changes with the number of workers. Trials per hour is the steady
  rate: the trials' work done while every worker was busy and past its first trial (imports,
  CUDA start, model load), over that window (`steady_rate`);
  the rate over the command's wall time is there too (`trials_per_hour_wall`).

Model FLOPs of one training step on B sequences of s tokens, for L layers of width h and P
non-embedding parameters (an embedding lookup is no matmul; tests/test_perf.py checks the formula
against torch's FLOP counter): 6·P·B·s (forward and backward matmuls) + 12·L·h·B·s² (attention
scores and context). MFU = model FLOP/s / the card's peak dense bf16 FLOP/s (`PEAK_BF16_TFLOPS`,
or `--peak-tflops`); an unknown card reports MFU null with its name.

Time guard: `--budget` seconds in all (default 280); each phase has a planned share and a floor,
gets min(share, what is left), and is skipped, with a line saying so, when that is under its
floor. A sweep gets `hydra.sweeper.timeout` (no new trial after it), a Ctrl-C 10 s before the
end of its share and a kill (its helpers too) at it. Every phase appends one JSON line to
`--out` as it ends (default `$OUT/results.jsonl` when `$OUT` is set, else
benchmarks/results.jsonl); each line carries the issue's targets and whether they are met so
far; a last `summary` line repeats them. Exit 1 when a phase failed. Without a CUDA GPU it
refuses in one line (exit 2) unless `--cpu-smoke`.
"""

# no `from __future__ import annotations`: the tests load this file by path, without a module
# entry, and dataclasses resolve string annotations through the module
import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Peak dense bf16 tensor-core TFLOP/s (no sparsity) from NVIDIA's data sheets: the H100 and H200
# Tensor Core GPU data sheets (H100 SXM 989, H100 PCIe 756, H100 NVL 835, H200 SXM 989,
# H200 NVL 836), the A100 data sheet (312, SXM and PCIe), the L4 (121) and L40S (362) data
# sheets; they print twice these figures "with sparsity". Matched against torch's device name in
# this order ("NVIDIA H100 80GB HBM3" is the SXM part; "L40S" must not read as "L4").
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    (r"H200 NVL", 836.0),
    (r"H200", 989.0),
    (r"H100 NVL", 835.0),
    (r"H100 PCIe", 756.0),
    (r"H100 (SXM|80GB HBM3)", 989.0),
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
]

TARGET_MFU = 0.35  # bert_small shape at 128 x 256 (issue 28)
TARGET_PACKING = 2.0  # MiniLM sweep: trials/hour at 4 trials per GPU >= 2x that at 1
BERT_SMALL = dict(
    vocab_size=30522, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
    intermediate_size=2048,
)  # fmt: skip


def peak_tflops(device_name: str) -> float | None:
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return tflops
    return None


def model_shape(model) -> tuple[int, int, int]:
    """(non-embedding parameters, layers, hidden size) of a BERT-style model."""
    embedding_params = sum(
        p.numel() for name, p in model.named_parameters() if ".embeddings." in f".{name}"
    )
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    return total - embedding_params, cfg.num_hidden_layers, cfg.hidden_size


def train_flops(params: int, layers: int, hidden: int, batch: int, seq: int) -> float:
    """Model FLOPs of one training step (forward + backward) on `batch` sequences of `seq`."""
    return 6.0 * params * batch * seq + 12.0 * layers * hidden * batch * seq * seq


def mfu(flops_per_step: float, steps: int, seconds: float, peak: float | None) -> float | None:
    """Achieved model FLOP/s over the peak (TFLOP/s); None without a known peak."""
    if not peak or seconds <= 0:
        return None
    return flops_per_step * steps / seconds / (peak * 1e12)


def steady_rate(
    trials: list[tuple[Any, float, float]], warmup: int = 1
) -> tuple[float | None, float]:
    """Trials per hour while every worker was busy and warm, and that window's length (s).

    `trials` are (worker, start, end). The window runs from the end of the last worker's
    `warmup`-th trial (a worker's first trial pays for its imports, CUDA start and model load) to
    the first worker's last end (after it, some workers have run out of trials); each trial
    counts the share of its time inside the window (a trial half in it is half a trial). None
    when the window is empty."""
    by_worker: dict[Any, list[tuple[float, float]]] = {}
    for worker, start, end in sorted(trials, key=lambda t: t[1]):
        by_worker.setdefault(worker, []).append((start, end))
    if not by_worker or any(len(spans) <= warmup for spans in by_worker.values()):
        return None, 0.0
    lo = max(spans[warmup - 1][1] if warmup else spans[0][0] for spans in by_worker.values())
    hi = min(max(e for _, e in spans) for spans in by_worker.values())
    if hi <= lo:
        return None, 0.0
    done = sum(
        max(0.0, min(e, hi) - max(s, lo)) / (e - s) for _, s, e in trials if e > s
    )  # fractional trials inside [lo, hi]
    return done * 3600.0 / (hi - lo), hi - lo


# --------------------------------------------------------------------------- targets


@dataclass
class Targets:
    """The issue's two targets, filled in as the phases measure them (None: not measured)."""

    smoke: bool
    mfu: float | None = None
    rate_1: float | None = None
    rate_4: float | None = None

    def as_dict(self) -> dict:
        ratio = self.rate_4 / self.rate_1 if self.rate_1 and self.rate_4 is not None else None
        return {
            "bert_small_mfu_128x256": self._one(f">= {TARGET_MFU}", self.mfu, TARGET_MFU),
            "minilm_trials_per_hour_4_vs_1_per_gpu": self._one(
                f">= {TARGET_PACKING}x", ratio, TARGET_PACKING
            ),
        }

    def _one(self, want: str, got: float | None, floor: float) -> dict:
        met = None if got is None or self.smoke else got >= floor
        out = {"want": want, "got": None if got is None else round(got, 4), "met": met}
        if self.smoke:
            out["note"] = "CPU smoke run: not judged"
        return out


# --------------------------------------------------------------------------- time guard


@dataclass
class Phase:
    name: str
    share: float  # planned seconds
    floor: float  # below this it is not worth starting


def plan(smoke: bool) -> list[Phase]:
    """The phases and their planned seconds: on a GPU 2 x 20 + 80 + 70 + 90 = 280. Four workers
    take longest to start and share the GPU: sweep:4 gets the most."""
    if smoke:  # a slow shared CPU: generous shares, tiny work
        return [Phase("model:minilm", 120, 5), Phase("model:bert_small", 120, 5)] + [
            Phase(f"sweep:{n}", 240, 20) for n in (1, 2, 4)
        ]
    models = [Phase("model:minilm", 20, 10), Phase("model:bert_small", 20, 10)]
    return models + [Phase("sweep:1", 80, 50), Phase("sweep:2", 70, 50), Phase("sweep:4", 90, 50)]


class Budget:
    def __init__(self, total: float, clock=time.monotonic):
        self.total, self.clock, self.start = total, clock, clock()

    def left(self) -> float:
        return self.total - (self.clock() - self.start)

    def grant(self, phase: Phase) -> float | None:
        """Seconds this phase may take, or None: skip it (less left than its floor)."""
        cap = min(phase.share, self.left())
        return cap if cap >= phase.floor else None


@dataclass
class Context:
    """What every phase needs to know about the machine, and the targets filled in so far."""

    device: str
    device_name: str
    peak: float | None
    smoke: bool
    first_gpu: str | None
    targets: Targets


# --------------------------------------------------------------------------- model phases


def build_model(which: str):
    """(model, batch, seq) of a model phase at its full size."""
    from transformers import AutoModelForSequenceClassification, BertConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # no load report for the head it re-initialises
    hf_logging.disable_progress_bar()

    if which == "bert_small":
        config = BertConfig(**BERT_SMALL, num_labels=2)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
        return model, 128, 256
    from hydra import compose, initialize_config_dir

    from sweep.core.config import register_configs
    from sweep.train.model import build_model as build

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["tracking=none", "model.attn_implementation=sdpa"])
    model = build(cfg.model, 2, seed=0)
    return model, int(cfg.trainer.train_batch_size), int(cfg.data.max_length)


def train_steps(model, batch: int, seq: int, device: str, warmup: int, steps: int, window: float):
    """Time training steps after `warmup`: (steps timed, seconds). Stops at `steps` or when
    `window` seconds have passed, whichever comes first."""
    import torch

    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda")
    vocab = model.config.vocab_size
    ids = torch.randint(1000, vocab, (batch, seq), device=device)  # (B, s)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    done = 0
    while done < steps and (done == 0 or time.perf_counter() - start < window):
        step()  # the clock is read without a sync: the queue runs ahead by a few steps at most
        done += 1
    sync(device)
    return done, time.perf_counter() - start


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def run_model_phase(which: str, cap: float, ctx: Context) -> dict:
    import torch

    cuda = ctx.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    loaded = time.perf_counter()
    model, batch, seq = build_model(which)
    if ctx.smoke:
        batch, seq = 2, 16
    shape = model_shape(model)
    total_params = sum(p.numel() for p in model.parameters())
    warmup, steps = (1, 2) if ctx.smoke else (10, 2000)
    window = max(1.0, cap - (time.perf_counter() - loaded) - 8.0)  # load + warm-up + slack
    done, seconds = train_steps(model, batch, seq, ctx.device, warmup, steps, window)
    flops = train_flops(*shape, batch, seq)
    achieved = mfu(flops, done, seconds, ctx.peak)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    del model
    if cuda:
        torch.cuda.empty_cache()
    if which == "bert_small" and not ctx.smoke:
        ctx.targets.mfu = achieved
    return {
        "model": which,
        "precision": "bf16 autocast",
        "batch": batch,
        "seq": seq,
        "params_total": total_params,
        "params_non_embedding": shape[0],
        "steps_timed": done,
        "timed_seconds": round(seconds, 3),
        "samples_per_s": round(done * batch / seconds, 1),
        "tokens_per_s": round(done * batch * seq / seconds, 1),
        "model_tflops_per_s": float(f"{flops * done / seconds / 1e12:.4g}"),
        "mfu": None if achieved is None else float(f"{achieved:.4g}"),
        "peak_memory_mb": None if peak_mb is None else round(peak_mb, 1),
    }


# --------------------------------------------------------------------------- sweep phases


def sweep_command(wd: Path, per_gpu: int, timeout: float, smoke: bool) -> list[str]:
    """`python train.py -m` as the default sweep, with the placement feature, in `wd`."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m"]
    cmd += ["hydra.sweeper.gpus=auto", f"hydra.sweeper.trials_per_gpu={per_gpu}"]
    cmd += [f"hydra.sweeper.timeout={int(timeout)}", "hydra.sweeper.confirm.top_k=0"]
    cmd += ["hydra.sweeper.pruner=none", "tracking.experiment=gpu-bench"]
    cmd += [f"tracking.uri=sqlite:///{wd / 'mlflow.db'}"]
    cmd += [f"hydra.sweeper.storage=journal://{wd / 'study.journal'}"]
    cmd += [f"hydra.sweep.dir={wd / 'multirun'}"]
    if smoke:  # the CPU rule ignores trials_per_gpu: one light worker, the tiny model
        cmd += ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_workers=1", "trainer.device=cpu"]
        cmd += ["model=tiny", "data.train_size=32", "data.eval_size=16", "data.max_length=32"]
    else:  # more than the timeout lets run: the clock decides
        cmd += [f"hydra.sweeper.n_trials={16 * per_gpu}"]
    return cmd


def run_sweep(cmd: list[str], wd: Path, cap: float, gpu: str | None) -> tuple[int, float, bool]:
    """Run the sweep; Ctrl-C 10 s before `cap` (it fails and re-enqueues what runs, and stops its
    helpers), killed with its helpers at `cap`. (exit status, wall seconds, interrupted)."""
    import psutil

    env = {**os.environ, "SWEEP_CACHE_DIR": str(wd / "cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[key] = "1"
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu  # one GPU: the figures are per GPU
    start = time.perf_counter()
    with open(wd / "output.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=wd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=max(1.0, cap - 10)), time.perf_counter() - start, False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=max(1.0, cap - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            # the helpers run in sessions of their own: the sweep's descendants, by process id
            for p in [*psutil.Process(proc.pid).children(recursive=True), proc]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            proc.wait()
    return proc.returncode, time.perf_counter() - start, True


def read_trials(wd: Path) -> list:
    import optuna

    from sweep.search.study import open_storage

    path = wd / "study.journal"
    if not path.exists():
        return []
    storage = open_storage(f"journal://{path}")
    trials = []
    for name in optuna.study.get_all_study_names(storage=storage):
        trials += optuna.load_study(study_name=name, storage=storage).trials
    return trials


def trial_metrics(wd: Path) -> dict:
    """What the trials logged to MLflow about their memory and speed, where they log it."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{wd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gpu-bench")
    if exp is None:
        return {}
    metrics = [r.data.metrics for r in client.search_runs([exp.experiment_id], max_results=1000)]
    mem = [m["perf.peak_memory_mb"] for m in metrics if "perf.peak_memory_mb" in m]
    sps = [m["perf.train_samples_per_s"] for m in metrics if "perf.train_samples_per_s" in m]
    out = {}
    if mem:
        out["trial_peak_memory_mb_max"] = round(max(mem), 1)
    if sps:
        out["trial_train_samples_per_s_median"] = median(sps)
    return out


def sweep_result(wd: Path, per_gpu: int, code: int, wall: float) -> dict:
    from sweep.search.study import PID

    trials = read_trials(wd)
    # trials that ran to their end: a trial failed by the interrupt at the cap is no throughput
    ended = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and t.datetime_start]
    spans = [
        (t.system_attrs.get(PID), t.datetime_start.timestamp(), t.datetime_complete.timestamp())
        for t in ended
    ]
    warmup = 1  # each worker's first trial left out; where a worker ran only one, kept
    rate, window = steady_rate(spans, warmup)
    if rate is None:
        warmup = 0
        rate, window = steady_rate(spans, warmup)
    states = [t.state.name for t in trials]
    return {
        "trials_per_gpu": per_gpu,
        "exit_code": code,
        "wall_s": round(wall, 1),
        "trials": len(ended),
        "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL"),
        "workers_seen": len({w for w, _, _ in spans}),
        "steady_window_s": round(window, 1),
        "steady_warmup_trials": warmup,
        "trials_per_hour": None if rate is None else round(rate, 1),
        "trials_per_hour_wall": round(len(ended) * 3600 / wall, 1) if wall > 0 else None,
        "median_trial_s": median([e - s for _, s, e in spans]),
    }


def median(xs: list[float]) -> float | None:
    return round(sorted(xs)[len(xs) // 2], 2) if xs else None


def run_sweep_phase(per_gpu: int, cap: float, ctx: Context) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"gpu-bench-sweep{per_gpu}-") as tmp:
        wd = Path(tmp)
        # imports, Hydra and the stores (~15 s), the last trial, the summary: the rest searches
        timeout = max(10.0, cap - 45.0)
        cmd = sweep_command(wd, per_gpu, timeout, ctx.smoke)
        code, wall, interrupted = run_sweep(cmd, wd, cap, ctx.first_gpu)
        out = {**sweep_result(wd, per_gpu, code, wall), "timeout_s": int(timeout)}
        out |= {"interrupted": interrupted, **trial_metrics(wd), "overrides": cmd[3:]}
        if code != 0 and not interrupted:
            out["error"] = f"train.py -m ended with exit status {code}"
            out["log_tail"] = (wd / "output.log").read_text()[-1500:]
    rate = out["trials_per_hour"]
    if not ctx.smoke and rate is not None and per_gpu in (1, 4):
        setattr(ctx.targets, f"rate_{per_gpu}", rate)
    return out


# --------------------------------------------------------------------------- main


def refusal(cuda: bool, smoke: bool) -> str | None:
    """The one line to refuse with, or None to go on."""
    if cuda or smoke:
        return None
    return (
        "error: no CUDA GPU visible (torch.cuda.is_available() is False): this benchmark needs "
        "one; --cpu-smoke runs every phase at a tiny size on the CPU"
    )


def default_out() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "results.jsonl" if out else ROOT / "benchmarks" / "results.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", "--results", type=Path, default=None, help="the results.jsonl")
    ap.add_argument(
        "--cpu-smoke",
        "--dry-run",
        action="store_true",
        dest="smoke",
        help="no GPU needed: every phase at a tiny size on the CPU (targets not judged)",
    )
    ap.add_argument("--budget", type=float, help="seconds for all phases (280; --cpu-smoke: 900)")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s")
    ap.add_argument("--phases", nargs="*", help="a subset, e.g. model:bert_small sweep:1 sweep:4")
    a = ap.parse_args(argv)
    known = [p.name for p in plan(a.smoke)]
    if a.phases and set(a.phases) - set(known):
        ap.error(f"--phases: unknown {sorted(set(a.phases) - set(known))}; known: {known}")
    a.out = a.out or default_out()
    a.budget = a.budget or (900.0 if a.smoke else 280.0)  # a shared CPU is slow to start
    return a


def context(a: argparse.Namespace) -> Context:
    import torch

    from sweep.core.devices import visible_gpus

    if a.smoke:
        name, peak, first = platform.processor() or platform.machine() or "cpu", a.peak_tflops, None
    else:
        name = torch.cuda.get_device_name(0)
        peak, first = a.peak_tflops or peak_tflops(name), (visible_gpus() or ["0"])[0]
    device = "cpu" if a.smoke else "cuda"
    return Context(device, name, peak, a.smoke, first, Targets(a.smoke))


def meta(ctx: Context) -> dict:
    import torch
    import transformers

    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "benchmark": "gpu",
        "smoke": ctx.smoke,
        "device": ctx.device_name,
        "gpus_visible": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "bf16_native": ctx.device == "cuda" and torch.cuda.is_bf16_supported(),
        "peak_tflops": ctx.peak,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "commit": commit,
    }


def write(path: Path, line: dict) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(text + "\n")


def run_phase(phase: Phase, cap: float, ctx: Context) -> dict:
    kind, arg = phase.name.split(":")
    try:
        if kind == "model":
            return run_model_phase(arg, cap, ctx)
        return run_sweep_phase(int(arg), cap, ctx)
    except Exception as e:  # noqa: BLE001 - a failed phase is a line, the others still run
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        return {"error": f"{type(e).__name__}: {first}"}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    budget = Budget(a.budget)
    import torch

    why = refusal(torch.cuda.is_available(), a.smoke)
    if why:
        print(why, file=sys.stderr)
        return 2
    ctx = context(a)
    if ctx.peak is None and not a.smoke:
        print(f"note: peak bf16 FLOP/s of {ctx.device_name!r} unknown: MFU null (--peak-tflops)")
    common = meta(ctx)
    failed = False
    for phase in plan(a.smoke):
        if a.phases and phase.name not in a.phases:
            continue
        line = {**common, "phase": phase.name, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
        cap = budget.grant(phase)
        if cap is None:
            line |= {
                "skipped": True,
                "reason": f"{budget.left():.0f} s left, needs {phase.floor:.0f}",
            }
        else:
            line |= {"budget_s": round(cap), **run_phase(phase, cap, ctx)}
            failed |= "error" in line
        line["elapsed_s"] = round(budget.total - budget.left(), 1)
        write(a.out, line | {"targets": ctx.targets.as_dict()})
    summary = {**common, "phase": "summary", "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write(a.out, summary | {"elapsed_s": round(budget.total - budget.left(), 1), "failed": failed,
                            "targets": ctx.targets.as_dict()})  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
