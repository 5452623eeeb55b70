"""Building blocks shared by every layer: RMSNorm, SwiGLU and rotary position embeddings.

Shapes: B batch, T tokens, H heads, D head dim, C model dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt2.model.fuse import project


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back, as in Llama / Lingua."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).type_as(x)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


class SwiGLU(nn.Module):
    """out = W2(silu(W1 x) * W3 x)."""

    input_projections = ("w1", "w3")  # one gate-up matmul once fused (lt2.model.fuse)

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = project(self, x, self.input_projections)
        return self.w2(F.silu(gate) * up)


def rope_frequencies(head_dim: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """Inverse frequencies [D/2] of the rotary embedding."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
    exponents = torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
    return 1.0 / (theta**exponents)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [B, T, 1, D/2] fp32 of the rotation angles of positions [B, T] (shared by every head)."""
    angles = positions.to(torch.float32)[..., None] * inv_freq  # [B, T, D/2]
    return angles.cos()[:, :, None, :], angles.sin()[:, :, None, :]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by rope_cos_sin's cos, sin [B, T, 1, D/2] (half-split layout, as in Llama/HF)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.type_as(x)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by its token positions [B, T]. Layers get cos/sin once per forward from
    SeqInfo.rope instead; this is the one-off form."""
    return rotate(x, *rope_cos_sin(positions, inv_freq))
