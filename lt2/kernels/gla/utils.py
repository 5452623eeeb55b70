"""What the gated-linear-attention implementations share: argument checks and the gate's normal form.

Shapes: B batch, T tokens, H heads, K key dim, V value dim, N sequences (B, or segments with cu_seqlens).

The gate g is the log of the decay and comes in three forms:
    [B, T, H]       one decay per head and token        (Mamba2: g = A * dt)
    [B, T, H, K]    one decay per key channel and token (HGRN2: g = logsigmoid(f))
    [H]             one constant decay per head         (RetNet: g = log(1 - 2^(-5-h)))
"""

from __future__ import annotations

import torch


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
    if q.ndim != 4:
        raise ValueError(f"q must be [B, T, H, K], got shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k shape {tuple(k.shape)} != q shape {tuple(q.shape)}")
    if v.ndim != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] = [{B}, {T}, {H}, V], got shape {tuple(v.shape)}")
    if g.shape not in (q.shape[:3], q.shape, (H,)):
        raise ValueError(
            f"g must be [B, T, H] (per head), [B, T, H, K] (per key channel) or [H] (constant) with "
            f"B={B}, T={T}, H={H}, K={K}; got shape {tuple(g.shape)}"
        )
    n = B
    if cu_seqlens is not None:
        if cu_seqlens.ndim != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be [N+1] with N >= 1, got shape {tuple(cu_seqlens.shape)}")
        if B != 1:
            raise ValueError(f"with cu_seqlens the batch must be flattened to B = 1, got B = {B}")
        n = cu_seqlens.numel() - 1
    if initial_state is not None and initial_state.shape != (n, H, K, v.shape[-1]):
        raise ValueError(
            f"initial_state must be [N, H, K, V] = [{n}, {H}, {K}, {v.shape[-1]}], got {tuple(initial_state.shape)}"
        )


def expand_gate(g: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A constant per-head gate [H] as a [B, T, H] view; per-token gates pass through unchanged."""
    return g.expand(q.shape[:3]) if g.ndim == 1 else g


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for 16- and 32-bit inputs, fp64 for fp64 inputs: the precision the references accumulate in."""
    return torch.promote_types(x.dtype, torch.float32)
