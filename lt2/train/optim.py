"""AdamW with weight decay on matrices only, and the linear-warmup + cosine learning-rate schedule.

Weight decay 0.1 applies to every parameter with two or more dimensions (projections, SwiGLU, the tied
embedding / head, short-convolution kernels), except:
- 1-D parameters: RMSNorm weights, biases, per-head decay/step parameters (A_log, dt_bias, D, ...);
- `residual_gate` [loop_count, dim]: a per-loop, per-channel gate initialised at zero, not a matrix;
- any parameter a mixer marks with `_no_weight_decay = True` (the Mamba / fla convention).
`build_optimizer` logs the exempt names.

Schedule, for the update with 0-based index s (the s-th optimizer.step of the run), peak lr, W warmup
steps, S total steps, floor r = lr_min_ratio:
    s < W:   lr * (s + 1) / W
    s >= W:  lr * (r + (1 - r) * (1 + cos(pi * (s - W) / (S - W))) / 2)
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from lt2.train.args import OptimArgs

logger = logging.getLogger(__name__)

_WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def clean_name(name: str) -> str:
    """A parameter name without the prefixes activation checkpointing and torch.compile add."""
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies to this parameter (see the module docstring)."""
    if param.ndim < 2 or getattr(param, "_no_weight_decay", False):
        return False
    return clean_name(name).split(".")[-1] != "residual_gate"


def build_optimizer(
    model: nn.Module, args: OptimArgs, device: torch.device, lr_scale: Callable[[str], float] | None = None
) -> torch.optim.AdamW:
    """AdamW over `model`'s trainable parameters in two groups (decayed, exempt); fused kernels on CUDA.

    `lr_scale(name)` (name without wrapper prefixes) multiplies the lr of a parameter: each distinct scale
    gets its own pair of groups, and the schedule scales every group alike (distillation trains the new
    mixers faster than the copied weights).
    """
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    exempt_names = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = lr_scale(clean_name(name)) if lr_scale is not None else 1.0
        groups.setdefault((decays(name, p), scale), []).append(p)
        if not decays(name, p):
            exempt_names.append(clean_name(name))
    decay = [p for (d, _), ps in groups.items() if d for p in ps]
    logger.info(
        "weight decay %.3g on %d tensors; exempt (%d): %s",
        args.weight_decay,
        len(decay),
        len(exempt_names),
        ", ".join(exempt_names),
    )
    if lr_scale is None:  # the pre-training layout: always the two groups, in this order
        groups = {(True, 1.0): groups.get((True, 1.0), []), (False, 1.0): groups.get((False, 1.0), [])}
    param_groups = [
        {"params": ps, "weight_decay": args.weight_decay if d else 0.0, "lr": args.lr * scale}
        for (d, scale), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1]))
    ]
    kind = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(param_groups, lr=args.lr, betas=tuple(args.betas), eps=args.eps, **kind)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at 0-based update `step` (closed form in the module docstring)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, args: OptimArgs, total_steps: int):
    """LambdaLR whose factor at update s is `lr_factor(s, ...)`; its state is just the step count."""
    fn = functools.partial(lr_factor, warmup=args.warmup_steps, total=total_steps, min_ratio=args.lr_min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
