"""Softmax attention: full causal and sliding window, with GQA, RoPE and the optional output gate.

One module serves `full` and `window` because they share weights: a loop-level schedule such as
`SWA=128->...->full` runs the same projections with a different mask in each loop.

Caches: full attention keeps K/V for every slot ([B, max_len, Hkv, D]); window attention keeps a ring
buffer of the last W slots ([B, W, Hkv, D]) and the absolute slot each ring entry holds.

Backends: on CUDA, SDPA (flash) for plain causal training/prefill and flex_attention for windows and
packed documents; elsewhere SDPA with an explicit boolean mask (the reference math).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lt2.kernels import backend
from lt2.kernels import decode_attention as decode_kernels  # Triton loads on first use
from lt2.kernels.flex import flex_causal_attention
from lt2.mixers.base import SeqInfo, mean_visible_keys
from lt2.model.fuse import project
from lt2.model.layers import rope_frequencies, rotate
from lt2.model.pattern import MixerSpec


@dataclass
class KVCache:
    k: torch.Tensor  # [B, S, Hkv, D]; S = max_len (full) or W (window ring)
    v: torch.Tensor  # [B, S, Hkv, D]
    slot_of: torch.Tensor | None = None  # [W] long: absolute slot in each ring entry, -1 when empty (window only)


def visibility(
    q_slots: torch.Tensor, k_slots: torch.Tensor, window: int | None, key_valid: torch.Tensor | None
) -> torch.Tensor:
    """Bool [B or 1, 1, Tq, Tk]: key j is visible to query i iff 0 <= slot_i - slot_j < window and j is real.

    q_slots [Tq], k_slots [Tk]; key_valid [B, Tk]. A query always sees itself, so that pad queries (which
    see no real key) stay finite; a real query's own key is real, so this changes nothing for it.
    """
    dist = q_slots[:, None] - k_slots[None, :]  # [Tq, Tk]
    ok = dist >= 0
    if window is not None:
        ok = ok & (dist < window)
    ok = ok[None, None]
    if key_valid is not None:
        ok = ok & key_valid[:, None, None, :]
    return ok | (dist == 0)[None, None]


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [B, Tq, H, D], k/v [B, Tk, Hkv, D], mask bool broadcastable to [B, H, Tq, Tk] -> [B, Tq, H, D]."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=q.shape[2] != k.shape[2]
    )
    return out.transpose(1, 2)


class Attention(nn.Module):
    input_projections = ("wq", "wk", "wv", "wg")  # one QKV(+gate) matmul once fused (lt2.model.fuse)

    def __init__(self, args, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, args.dim, bias=False)
        # Output gate of gated attention: sigmoid(W_g x) per head channel, W_g zero-initialised.
        self.wg = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=False) if args.gated_attn else None
        self.rope_theta = args.rope_theta
        self.register_buffer("inv_freq", rope_frequencies(self.head_dim, args.rope_theta), persistent=False)

    def reset_parameters(self) -> None:
        self.inv_freq.copy_(rope_frequencies(self.head_dim, self.rope_theta))  # recomputed after meta init
        if self.wg is not None:
            nn.init.zeros_(self.wg.weight)

    def init_cache(self, batch: int, max_len: int, device, dtype, spec: MixerSpec) -> KVCache:
        size = max_len if spec.window is None else min(spec.window, max_len)
        shape = (batch, size, self.n_kv_heads, self.head_dim)
        k, v = torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)
        slot_of = None if spec.window is None else torch.full((size,), -1, device=device, dtype=torch.long)
        return KVCache(k, v, slot_of)

    def mixing_flops(self, context: int, spec: MixerSpec) -> float:
        """QK^T and AV, 2 FLOPs per multiply-add each, over the keys a causal query sees (within the window)."""
        return 4.0 * self.n_heads * self.head_dim * mean_visible_keys(context, spec.window)

    def decode_bytes(self, context: int, spec: MixerSpec, dtype: torch.dtype) -> float:
        """K and V of every visible key are read once (the new token's row written is negligible)."""
        keys = min(context, spec.window) if spec.window is not None else context
        return 2.0 * keys * self.n_kv_heads * self.head_dim * dtype.itemsize

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: KVCache | None, spec: MixerSpec) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v, gate = project(self, x, self.input_projections)
        q = q.view(B, T, self.n_heads, self.head_dim)
        k = k.view(B, T, self.n_kv_heads, self.head_dim)
        v = v.view(B, T, self.n_kv_heads, self.head_dim)
        cos, sin = seq.rope(self.inv_freq, self.rope_theta)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is None:
            o = self._attend_uncached(q, k, v, seq, spec.window)
        elif cache.slot_of is None:
            o = self._attend_full_cache(q, k, v, seq, cache)
        else:
            o = self._attend_ring(q, k, v, seq, cache, spec.window)
        if gate is not None:
            o = o * torch.sigmoid(gate).view_as(o)
        return self.wo(o.reshape(B, T, -1))

    def _attend_uncached(self, q, k, v, seq: SeqInfo, window: int | None) -> torch.Tensor:
        if backend.use_fast(q) and seq.pad_mask is None:
            if window is None and seq.cu_seqlens is None:
                return masked_attention_causal(q, k, v)
            return flex_causal_attention(q, k, v, window=window, cu_seqlens=seq.cu_seqlens)
        slots = torch.arange(q.shape[1], device=q.device)
        mask = visibility(slots, slots, window, seq.pad_mask)
        if seq.cu_seqlens is not None:
            doc = torch.searchsorted(seq.cu_seqlens[1:].long(), slots, right=True)
            mask = mask & (doc[:, None] == doc[None, :])
        return masked_attention(q, k, v, mask)

    def _attend_full_cache(self, q, k, v, seq: SeqInfo, cache: KVCache) -> torch.Tensor:
        cache.k.index_copy_(1, seq.slots, k.to(cache.k.dtype))
        cache.v.index_copy_(1, seq.slots, v.to(cache.v.dtype))
        if seq.host_cache_len is not None:  # prefill: read only the slots written so far
            end = seq.host_cache_len
            keys, values, key_valid = cache.k[:, :end], cache.v[:, :end], seq.key_mask[:, :end]
        elif backend.use_fast(q, "triton"):  # decode: split-KV kernel reading only the written slots
            return decode_kernels.decode_attention(q[:, 0], cache.k, cache.v, seq.cache_len, seq.key_mask)[:, None]
        else:  # decode: the whole static buffer, masked (graph-capturable)
            keys, values, key_valid = cache.k, cache.v, seq.key_mask
        k_slots = torch.arange(keys.shape[1], device=q.device)
        mask = visibility(seq.slots, k_slots, None, key_valid)
        return masked_attention(q, keys.to(q.dtype), values.to(q.dtype), mask)

    def _attend_ring(self, q, k, v, seq: SeqInfo, cache: KVCache, window: int) -> torch.Tensor:
        if q.shape[1] == 1 and backend.use_fast(q, "triton"):
            # decode: write the new token first (the entry it replaces is outside the window), then attend
            self._write_ring(k, v, seq.slots, cache)
            o = decode_kernels.decode_attention(
                q[:, 0], cache.k, cache.v, seq.cache_len, seq.key_mask, window=window, slot_of=cache.slot_of
            )
            return o[:, None]
        old_slots = cache.slot_of
        old_valid = (old_slots >= 0)[None] & seq.key_mask.gather(1, old_slots.clamp(min=0).expand(q.shape[0], -1))
        new_valid = seq.key_mask.index_select(1, seq.slots)
        keys = torch.cat([cache.k.to(q.dtype), k], dim=1)
        values = torch.cat([cache.v.to(q.dtype), v], dim=1)
        mask = visibility(seq.slots, torch.cat([old_slots, seq.slots]), window, torch.cat([old_valid, new_valid], 1))
        out = masked_attention(q, keys, values, mask)
        self._write_ring(k, v, seq.slots, cache)
        return out

    @staticmethod
    def _write_ring(k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor, cache: KVCache) -> None:
        """Keep the last `size` tokens of this call in the ring (a longer prefill overwrites it whole)."""
        size = cache.k.shape[1]
        keep = min(k.shape[1], size)
        slots = slots[-keep:]
        ring = slots % size
        cache.k.index_copy_(1, ring, k[:, -keep:].to(cache.k.dtype))
        cache.v.index_copy_(1, ring, v[:, -keep:].to(cache.v.dtype))
        cache.slot_of.index_copy_(0, ring, slots)


def masked_attention_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=q.shape[2] != k.shape[2]
    )
    return out.transpose(1, 2)
