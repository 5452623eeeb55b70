"""Pieces the linear-attention families share: the gated output RMSNorm and Mamba2's dt initialisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"silu": F.silu, "sigmoid": torch.sigmoid}


class GatedRMSNorm(nn.Module):
    """RMSNorm over groups of `group_size` channels of x [..., size], with an optional gate (fla's RMSNormGated).

    norm_before_gate: norm(x) * act(gate) (GDN, KDA, DeltaNet, RetNet), else norm(x * act(gate)) (Mamba2).
    A per-head norm is a call on [..., H, D] with size = D. Computed in fp32 (fp64 for fp64 inputs) and
    cast back, as fla's fused kernel does; `weight` [size] matches fla's norm weights.
    """

    def __init__(
        self,
        size: int,
        eps: float,
        group_size: int | None = None,
        activation: str = "silu",
        norm_before_gate: bool = True,
    ):
        super().__init__()
        group_size = size if group_size is None else group_size
        if group_size < 1 or size % group_size:
            raise ValueError(f"norm size {size} does not divide into groups of {group_size}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"gate activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.size, self.group_size, self.eps = size, group_size, eps
        self.activation, self.norm_before_gate = activation, norm_before_gate
        self.weight = nn.Parameter(torch.ones(size))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        act = _ACTIVATIONS[self.activation]
        y = x.to(dtype)
        if gate is not None and not self.norm_before_gate:
            y = y * act(gate.to(dtype))
        groups = y.unflatten(-1, (self.size // self.group_size, self.group_size))
        y = F.rms_norm(groups, (self.group_size,), eps=self.eps).flatten(-2) * self.weight.to(dtype)
        if gate is not None and self.norm_before_gate:
            y = y * act(gate.to(dtype))
        return y.to(x.dtype)


def dt_bias_init(n: int, dt_min: float = 0.001, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """[n] biases b with softplus(b) log-uniform in [dt_min, dt_max] (Mamba2's dt init, which fla uses)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))
