"""Fused input projections for inference: one matmul where a layer has several projections of the same input.

A decode step multiplies one token per row by every weight, so each projection is a GEMV-shaped matmul that
reads its weight once; a layer's q, k, v (and gate) projections, SwiGLU's gate and up projections and a
linear mixer's q/k/v/a/b(/g) projections are many small launches that each reach only part of the memory
bandwidth. Fused, they are one [sum_out, C] weight read by one matmul whose output is split into views.

    fuse_projections(model)   # after the model's final .to(device, dtype); inference only

Which projections fuse is declared by the module: `input_projections`, a tuple of attribute names whose
outputs its forward gets from `project(self, x, self.input_projections)`. The bias-free nn.Linear among them
(an attribute may be None, e.g. an optional gate, or another module, e.g. KDA's low-rank gate, which then runs
as it is) move into one contiguous tensor, and each keeps its nn.Parameter, now a view of its rows: state_dict
keys, shapes and values do not change, nothing is stored twice, and load_state_dict writes into the fused
tensor. Without fuse_projections, `project` calls each projection as before.

Who fuses: the Decoder (lt2.infer.decoder), i.e. generation and every decode benchmark, unless it is given
fuse=False. The scoring forwards (perplexity, zero-shot, the training loop's evaluations) do not: their
matmuls have B x T rows and are compute-bound, where stacking weights gains little, and their model may be
one that is still training.

Moving or casting the model afterwards (.to, load_state_dict(assign=True)) gives the parameters new storage
the fused tensor does not see: `project` raises then (call fuse_projections again). With grad enabled and
parameters that require grad (training), `project` takes the unfused path, whose matmuls reach the
parameters' gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FusedProjection:
    weight: torch.Tensor  # [sum_out, C] the projections' weights, stacked in `names` order
    names: tuple[str, ...]  # the fused projections (those of the module's group that are bias-free nn.Linear)
    sizes: tuple[int, ...]  # out_features of each, to split the output
    params: tuple[nn.Parameter, ...]  # their weights, views of `weight` (checked before use)


def _fusable(module) -> bool:
    return isinstance(module, nn.Linear) and module.bias is None


def _fused_views(fused: FusedProjection) -> bool:
    """Whether every parameter still lies where fuse_projections put it (a .to() or assign=True moves it)."""
    offset = 0
    for param, size in zip(fused.params, fused.sizes, strict=True):
        if param.data_ptr() != fused.weight[offset].data_ptr():
            return False
        offset += size
    return True


def project(module: nn.Module, x: torch.Tensor, names: tuple[str, ...]) -> tuple[torch.Tensor | None, ...]:
    """x [..., C] -> (getattr(module, name)(x) for name in names), None for a projection that is None.

    The module's fused projections (see fuse_projections) come from one matmul, split into views [..., out_i].
    >>> q, k, v, g = project(attention, x, ("wq", "wk", "wv", "wg"))
    """
    fused = getattr(module, "_fused_projection", None)
    if fused is not None and not torch.compiler.is_compiling() and not _fused_views(fused):
        raise RuntimeError(
            f"{type(module).__name__}'s fused projections {fused.names} no longer share storage with their "
            "parameters (the model was moved, cast or loaded with assign=True after fusing): call "
            "fuse_projections(model) again"
        )
    if fused is None or (torch.is_grad_enabled() and fused.params[0].requires_grad):
        return tuple(None if (m := getattr(module, n)) is None else m(x) for n in names)
    parts = dict(zip(fused.names, F.linear(x, fused.weight).split(fused.sizes, dim=-1), strict=True))
    return tuple(parts[n] if n in parts else (None if (m := getattr(module, n)) is None else m(x)) for n in names)


def fuse_projections(model: nn.Module) -> int:
    """Fuse the `input_projections` of every submodule that declares them, in place; returns how many modules.

    Call it after the model's last move or cast (see the module docstring); calling it again re-fuses only
    what a move separated. Inference only: gradients never reach the fused tensor (training takes the unfused
    path). unfuse_projections undoes it.
    >>> model = LoopedLM(args).to("cuda", torch.bfloat16).eval()
    >>> fuse_projections(model)   # attention, SwiGLU and linear mixers: one input matmul each
    """
    count = 0
    for module in model.modules():
        names = getattr(module, "input_projections", ())
        linears = {n: getattr(module, n) for n in names if _fusable(getattr(module, n))}
        if len(linears) < 2:
            continue
        fused = getattr(module, "_fused_projection", None)
        if fused is None or not _fused_views(fused):
            weight = torch.cat([lin.weight.detach() for lin in linears.values()])  # [sum_out, C]
            sizes = tuple(lin.out_features for lin in linears.values())
            for lin, part in zip(linears.values(), weight.split(sizes), strict=True):
                lin.weight.data = part  # the same Parameter object, now a view of its rows
            params = tuple(lin.weight for lin in linears.values())
            module._fused_projection = FusedProjection(weight, tuple(linears), sizes, params)
        count += 1
    return count


def unfuse_projections(model: nn.Module) -> None:
    """Undo fuse_projections: every parameter gets its own storage again and forwards project one by one."""
    for module in model.modules():
        fused = getattr(module, "_fused_projection", None)
        if fused is not None:
            for param in fused.params:
                param.data = param.data.clone()
            del module._fused_projection
