"""What the delta-rule implementations share: argument checks and the L2 normalisation of q and k.

Shapes: B batch, T tokens, H heads, K key dim, V value dim, N sequences (B, or segments with cu_seqlens).
"""

from __future__ import annotations

import torch

# fla's l2norm: x / sqrt(sum(x^2) + eps), eps inside the root (not F.normalize's max(||x||, eps)).
L2NORM_EPS = 1e-6


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x [..., D] -> x / sqrt(sum(x^2) + 1e-6) over the last dim, as fla's kernels normalise q and k."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2NORM_EPS)


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
) -> None:
    """Raise ValueError, naming the shapes, unless the arguments form one delta-rule problem.

    q, k [B, T, H, K]; v [B, T, H, V]; beta [B, T, H]; g None, [B, T, H] or [B, T, H, K];
    initial_state [N, H, K, V]; cu_seqlens [N+1] (then B must be 1).
    """
    if q.ndim != 4:
        raise ValueError(f"q must be [B, T, H, K], got shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k shape {tuple(k.shape)} != q shape {tuple(q.shape)}")
    if v.ndim != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] = [{B}, {T}, {H}, V], got shape {tuple(v.shape)}")
    if beta.shape != q.shape[:3]:
        raise ValueError(f"beta must be [B, T, H] = [{B}, {T}, {H}], got shape {tuple(beta.shape)}")
    if g is not None and g.shape not in (q.shape[:3], q.shape):
        raise ValueError(
            f"g must be [B, T, H] (scalar decay) or [B, T, H, K] (per-key decay) = [{B}, {T}, {H}(, {K})], "
            f"got shape {tuple(g.shape)}"
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
