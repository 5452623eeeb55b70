"""The learning-rate schedule equals its closed form at chosen steps (also as logged by a real run), and
weight decay applies to matrices only.

    pytest tests/train/test_optim.py
"""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import read_metrics

from lt2.config import ModelArgs
from lt2.model.looped import LoopedLM
from lt2.train.args import OptimArgs
from lt2.train.optim import build_optimizer, build_scheduler, decays


def closed_form(s: int, lr: float, warmup: int, total: int, floor: float) -> float:
    """lr of the 0-based update s: linear warmup to lr, then cosine to floor * lr at update `total`."""
    if s < warmup:
        return lr * (s + 1) / warmup
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))


@pytest.mark.parametrize(("warmup", "total", "floor"), [(10, 100, 0.1), (0, 50, 0.0), (1, 7, 1e-6)])
def test_schedule_matches_closed_form(warmup, total, floor):
    param = torch.nn.Parameter(torch.zeros(2, 2))
    args = OptimArgs(lr=3e-4, warmup_steps=warmup, lr_min_ratio=floor)
    opt = build_optimizer(torch.nn.ParameterDict({"w": param}), args, torch.device("cpu"))
    sched = build_scheduler(opt, args, total)
    chosen = {0, 1, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2, total - 1}
    seen = {}
    for s in range(total):
        seen[s] = opt.param_groups[0]["lr"]  # the lr this update uses
        param.grad = torch.ones_like(param)
        opt.step()
        sched.step()
    for s in sorted(chosen):
        assert seen[s] == pytest.approx(closed_form(s, 3e-4, warmup, total, floor), rel=1e-12, abs=1e-15), s
    assert seen[total - 1] > 3e-4 * floor  # the floor is reached after the last update, not before


def test_logged_lr_of_a_run_is_the_closed_form(golden_single):
    records = [r for r in read_metrics(golden_single / "run" / "metrics.jsonl") if "loss" in r]
    for r in records:  # the golden recipe: lr 3e-3, 3 warmup steps, 16 steps, default floor 1e-6
        assert r["lr"] == pytest.approx(closed_form(r["step"] - 1, 3e-3, 3, 16, 1e-6), rel=1e-12)


def test_weight_decay_on_matrices_only():
    args = ModelArgs(vocab_size=50, dim=16, n_layers=2, loop_count=2, n_heads=2, n_kv_heads=2, head_dim=8, ffn_dim=32,
                     max_seqlen=32, use_residual=True, gated_attn=True)  # fmt: skip
    model = LoopedLM(args)
    flagged = model.layers[0].mixer.wq.weight
    flagged._no_weight_decay = True  # the Mamba / fla convention for A_log, dt_bias, ...
    named = dict(model.named_parameters())
    exempt = {n for n, p in named.items() if not decays(n, p)}
    assert exempt == {
        "residual_gate",
        "norm.weight",
        "layers.0.mixer.wq.weight",
        *(f"layers.{i}.{norm}.weight" for i in range(2) for norm in ("mixer_norm", "ffn_norm")),
    }
    assert decays("embed.weight", named["embed.weight"])  # the tied head is a matrix
    # Wrapper prefixes added by activation checkpointing / compile do not hide the gate.
    assert not decays("layers.0._checkpoint_wrapped_module._orig_mod.residual_gate", named["residual_gate"])
    opt = build_optimizer(model, OptimArgs(weight_decay=0.1), torch.device("cpu"))
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(free["params"]) == len(named) and len(free["params"]) == len(exempt)
    assert opt.defaults["betas"] == (0.9, 0.95)
