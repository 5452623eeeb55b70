"""fla 0.6's `parallel_nsa` for CUDA training and prefill, with the sliding-window branch through flex_attention.

fla computes NSA's window branch with flash-attn, which has no PyPI wheel here; we call `parallel_nsa` with
window_size=0 and add g_swa * (causal attention over the last `window` tokens) from lt2.kernels.flex, the
same mask as flash-attn's window_size=(window - 1, 0). fla 0.6 has no NSA decode kernel: the mixer decodes
with the dense reference (naive.py) on GPU tensors.
"""

from __future__ import annotations

import torch

from lt2.kernels.flex import flex_causal_attention


def fla_nsa_unsupported(n_heads: int, n_kv_heads: int, head_dim: int, block_size: int, block_count: int) -> str | None:
    """Why fla 0.6's NSA kernels cannot run these shapes, or None when they can."""
    group = n_heads // n_kv_heads
    if group < 16 or group & (group - 1):
        return (
            f"fla's NSA kernel needs n_heads / n_kv_heads to be a power of two >= 16 (a tl.dot tile), got "
            f"n_heads={n_heads}, nsa.n_kv_heads={n_kv_heads} (group {group}); e.g. 16 heads with 1 KV head"
        )
    if head_dim > 256:
        return f"fla's NSA kernel needs head_dim <= 256, got {head_dim}"
    if block_size < 16 or block_size & (block_size - 1):
        return f"fla's NSA kernel needs nsa.block_size to be a power of two >= 16, got {block_size}"
    if block_size < 2 * (1 << (block_count - 1).bit_length()):
        return (
            f"fla's NSA top-k needs nsa.block_size >= 2 * next_power_of_2(nsa.block_count), got "
            f"block_size={block_size}, block_count={block_count}"
        )
    return None


def fla_nsa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g_cmp: torch.Tensor,
    g_slc: torch.Tensor,
    g_swa: torch.Tensor,
    block_size: int,
    block_count: int,
    window: int,
    cu_seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """NSA over whole sequences: q [B, T, HQ, D], k/v [B, T, H, D], gates [B, T, HQ] -> [B, T, HQ, D].

    With cu_seqlens [N+1] (packed documents) the batch must be 1. Equals `naive_nsa` up to kernel precision
    (and the order of exactly tied block scores, which fla leaves unspecified).
    """
    from fla.ops.nsa import parallel_nsa

    o = parallel_nsa(
        q=q,
        k=k,
        v=v,
        g_cmp=g_cmp,
        g_slc=g_slc,
        block_counts=block_count,
        block_size=block_size,
        window_size=0,
        cu_seqlens=cu_seqlens,
    )
    o_swa = flex_causal_attention(q, k, v, window=window, cu_seqlens=cu_seqlens)
    return torch.addcmul(o, o_swa, g_swa.unsqueeze(-1))
