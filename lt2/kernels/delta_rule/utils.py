"""What the delta-rule implementations share: argument checks and the L2 normalisation of q and k.

Shapes: B batch, T tokens, H heads, K key dim, V value dim, N sequences (B, or segments with cu_seqlens).
"""

from __future__ import annotations

import torch

from lt2.kernels.common import check_qkv_state

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
    check_qkv_state(q, k, v, initial_state, cu_seqlens)
    B, T, H, K = q.shape
    if beta.shape != q.shape[:3]:
        raise ValueError(f"beta must be [B, T, H] = [{B}, {T}, {H}], got shape {tuple(beta.shape)}")
    if g is not None and g.shape not in (q.shape[:3], q.shape):
        raise ValueError(
            f"g must be [B, T, H] (scalar decay) or [B, T, H, K] (per-key decay) = [{B}, {T}, {H}(, {K})], "
            f"got shape {tuple(g.shape)}"
        )
