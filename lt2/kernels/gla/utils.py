"""What the gated-linear-attention implementations share: argument checks and the gate's normal form.

Shapes: B batch, T tokens, H heads, K key dim, V value dim, N sequences (B, or segments with cu_seqlens).

The gate g is the log of the decay and comes in three forms:
    [B, T, H]       one decay per head and token        (Mamba2: g = A * dt)
    [B, T, H, K]    one decay per key channel and token (HGRN2: g = logsigmoid(f))
    [H]             one constant decay per head         (RetNet: g = log(1 - 2^(-5-h)))
"""

from __future__ import annotations

import torch

from lt2.kernels.common import check_qkv_state


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    initial_state: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
) -> None:
    """Raise ValueError, naming the shapes, unless the arguments form one gated-linear-attention problem.

    q, k [B, T, H, K]; v [B, T, H, V]; g [B, T, H], [B, T, H, K] or [H]; initial_state [N, H, K, V];
    cu_seqlens [N+1] (then B must be 1).
    """
    check_qkv_state(q, k, v, initial_state, cu_seqlens)
    B, T, H, K = q.shape
    if g.shape not in (q.shape[:3], q.shape, (H,)):
        raise ValueError(
            f"g must be [B, T, H] (per head), [B, T, H, K] (per key channel) or [H] (constant) with "
            f"B={B}, T={T}, H={H}, K={K}; got shape {tuple(g.shape)}"
        )


def expand_gate(g: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A constant per-head gate [H] as a [B, T, H] view; per-token gates pass through unchanged."""
    return g.expand(q.shape[:3]) if g.ndim == 1 else g
