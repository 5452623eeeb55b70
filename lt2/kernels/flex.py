"""Causal attention with a sliding window and/or packed-document masking through flex_attention (CUDA)."""

from __future__ import annotations

import functools

import torch

try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover - very old torch
    create_block_mask = flex_attention = None


@functools.cache
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def _block_mask(total: int, window: int | None, cu_seqlens: torch.Tensor | None, device):
    doc = None
    if cu_seqlens is not None:
        positions = torch.arange(total, device=device)
        doc = torch.searchsorted(cu_seqlens[1:].long(), positions, right=True)

    def mask_mod(b, h, q_idx, kv_idx):
        ok = q_idx >= kv_idx
        if window is not None:
            ok = ok & (q_idx - kv_idx < window)
        if doc is not None:
            ok = ok & (doc[q_idx] == doc[kv_idx])
        return ok

    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=total, KV_LEN=total, device=device)


def flex_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None, cu_seqlens: torch.Tensor | None = None
) -> torch.Tensor:
    """q [B, T, H, D], k/v [B, T, Hkv, D] -> [B, T, H, D], causal within `window` and within documents."""
    if flex_attention is None:
        raise RuntimeError("flex_attention needs torch >= 2.5")
    mask = _block_mask(q.shape[1], window, cu_seqlens, q.device)
    out = _compiled_flex()(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask, enable_gqa=q.shape[2] != k.shape[2]
    )
    return out.transpose(1, 2)
