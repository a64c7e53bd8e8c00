"""Optimizer parameter groups and LR schedules.

.venv/bin/python -m pytest tests/test_optim.py
"""

from __future__ import annotations

import pytest
import torch
from conftest import compose
from omegaconf import OmegaConf

from sweep.train.model import build_model
from sweep.train.optim import build_optimizer, build_scheduler, param_groups


def keras_polynomial(step: int, lr: float, end: float, decay_steps: int, power: float) -> float:
    """tf.keras.optimizers.schedules.PolynomialDecay (cycle=False), written from its docs."""
    step = min(step, decay_steps)
    return (lr - end) * (1 - step / decay_steps) ** power + end


def lr_at(scheduler, optimizer, step: int) -> float:
    for _ in range(step):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("step", [0, 334, 669, 1000])
def test_polynomial_matches_keras_over_669_steps(step):
    cfg = compose(["experiment=earlybert_polynomial"])
    assert (cfg.optimizer.lr, cfg.scheduler.decay_steps) == (2e-5, 669)
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=cfg.optimizer.lr)
    sched = build_scheduler(opt, cfg.scheduler, total_steps=1200, warmup_steps=0)
    expected = keras_polynomial(step, 2e-5, 0.0, 669, 1.0)
    assert lr_at(sched, opt, step) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_polynomial_power_and_end_lr_hold_after_decay():
    s = OmegaConf.create({"name": "polynomial", "power": 2.0, "end_lr": 1e-6, "decay_steps": 10})
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-4)
    sched = build_scheduler(opt, s, total_steps=40, warmup_steps=0)
    seen = [lr_at(sched, opt, 1 if i else 0) for i in range(30)]
    for i, lr in enumerate(seen):
        assert lr == pytest.approx(keras_polynomial(i, 1e-4, 1e-6, 10, 2.0), rel=1e-9)
    assert seen[10:] == [pytest.approx(1e-6)] * 20


@pytest.mark.parametrize("name", ["constant", "constant_with_warmup", "linear", "cosine"])
def test_named_schedules_warm_up_then_follow_their_shape(name):
    s = OmegaConf.create({"name": name, "power": 1.0, "end_lr": 0.0, "decay_steps": None})
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-3)
    warm = 0 if name == "constant" else 10
    sched = build_scheduler(opt, s, total_steps=100, warmup_steps=warm)
    lrs = [lr_at(sched, opt, 1 if i else 0) for i in range(100)]
    if warm:
        assert lrs[0] == 0.0 and lrs[5] == pytest.approx(5e-4) and lrs[10] == pytest.approx(1e-3)
    if name.startswith("constant"):
        assert lrs[-1] == pytest.approx(1e-3)
    else:
        assert lrs[-1] < 1e-4  # decayed towards 0
        assert lrs[55] < lrs[20]


def test_weight_decay_skips_biases_and_layernorm():
    cfg = compose(["model=tiny"])
    model = build_model(cfg.model, num_labels=2, seed=0)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") for p in decay["params"])
    assert all("LayerNorm" not in names[id(p)] for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("LayerNorm.weight") for n in no_decay_names)
    assert any(n.endswith("bias") for n in no_decay_names)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimizer_settings(name, cls):
    cfg = compose(
        [f"optimizer={name}", "model=tiny", "optimizer.betas=[0.8,0.95]", "optimizer.eps=1e-7"]
    )
    opt = build_optimizer(build_model(cfg.model, 2, seed=0), cfg.optimizer)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (
        group["betas"] == (0.8, 0.95) and group["eps"] == 1e-7 and group["lr"] == cfg.optimizer.lr
    )
