"""Native Sparse Attention (Yuan et al. 2025) with fla 0.6's NativeSparseAttention parameterisation.

    q, k, v = RoPE(W_q x), RoPE(W_k x), W_v x         GQA: nsa.n_kv_heads key/value heads
    g_cmp, g_slc, g_swa = sigmoid(W_g x)              one gate per query head and branch
    o = g_cmp * Compressed + g_slc * Selected + g_swa * Window;   y = W_o o

Compressed attends to the mean-pooled complete blocks of `block_size` tokens; Selected attends token-wise
to the `block_count` blocks with the highest compressed attention (summed over a GQA group, so the group
shares them; block 0 and the two latest blocks always kept); Window to the last `window` tokens. The math
and its masks are in lt2/kernels/nsa/README.md.

Cache per (loop, layer): K/V [B, max_len, Hkv, D], static, written in place at seq.slots. The compressed
blocks are recomputed from the cached keys at every call (a mean over each block; no learned
compression), so decoding needs nothing else and stays tensors-only.

Backends: fla's parallel_nsa (Triton) on CUDA for training and for a prompt that fills a fresh cache
without padding; the dense reference (lt2/kernels/nsa/naive.py) on CPU, for prefill onto an existing or
left-padded cache, and for decode (fla 0.6 has no NSA decode kernel), which then reads the whole cache per
step like full attention. fla's kernel needs n_heads / nsa.n_kv_heads to be a power of two >= 16; a
configuration that cannot run on it raises when a CUDA call would use it (the constructor warns early).
The softmax-attention output gate (gated_attn) is not applied: NSA has its own branch gates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from lt2.kernels import backend
from lt2.kernels.nsa import fla_nsa, fla_nsa_unsupported, naive_nsa
from lt2.mixers.attention import visibility
from lt2.mixers.base import SeqInfo, doc_offsets, mean_visible_keys
from lt2.model.fuse import project
from lt2.model.layers import rope_frequencies, rotate
from lt2.model.pattern import MixerSpec


@dataclass
class NSACache:
    k: torch.Tensor  # [B, max_len, Hkv, D] keys (RoPE applied)
    v: torch.Tensor  # [B, max_len, Hkv, D]


class NativeSparseAttention(nn.Module):
    input_projections = ("wq", "wk", "wv", "wgates")  # one matmul once fused (lt2.model.fuse)

    def __init__(self, args, layer_idx: int):
        super().__init__()
        cfg = args.nsa
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, cfg.n_kv_heads, args.head_dim
        self.block_size, self.block_count, self.window = cfg.block_size, cfg.block_count, cfg.window
        # None when fla's kernels can run these shapes; otherwise the reason, raised on a CUDA call
        self.fla_unsupported = fla_nsa_unsupported(
            self.n_heads, self.n_kv_heads, self.head_dim, self.block_size, self.block_count
        )
        if self.fla_unsupported and backend.has_fla() and torch.cuda.is_available():
            warnings.warn(f"nsa layer {layer_idx}: {self.fla_unsupported}; CUDA calls will raise", stacklevel=2)
        self.wq = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wgates = nn.Linear(args.dim, self.n_heads * 3, bias=False)  # fla's g_proj: (cmp, slc, swa) per head
        self.wo = nn.Linear(self.n_heads * self.head_dim, args.dim, bias=False)
        self.rope_theta = args.rope_theta
        self.register_buffer("inv_freq", rope_frequencies(self.head_dim, args.rope_theta), persistent=False)

    def reset_parameters(self) -> None:
        self.inv_freq.copy_(rope_frequencies(self.head_dim, self.rope_theta))  # recomputed after meta init

    def init_cache(self, batch: int, max_len: int, device, dtype, spec: MixerSpec) -> NSACache:
        shape = (batch, max_len, self.n_kv_heads, self.head_dim)
        return NSACache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def mixing_flops(self, context: int, spec: MixerSpec) -> float:
        """Forward FLOPs per token beyond the projections: the three branches' QK^T and AV products."""
        per_key = 4.0 * self.n_heads * self.head_dim
        compressed = mean_visible_keys(context) / self.block_size
        selected = mean_visible_keys(context, self.block_count * self.block_size)
        return per_key * (compressed + selected + mean_visible_keys(context, self.window))

    def decode_bytes(self, context: int, spec: MixerSpec, dtype: torch.dtype) -> float:
        """The algorithm's minimum: compressed blocks, the selected blocks and the window, K and V each.

        This assumes a cache of compressed blocks; the reference decode recomputes them from the full cache,
        so it reads more than this (the roofline is what a decode step needs, not what this one does).
        """
        keys = context / self.block_size + min(context, self.block_count * self.block_size) + min(context, self.window)
        return 2.0 * keys * self.n_kv_heads * self.head_dim * dtype.itemsize

    def _fla(self, q, k, v, gates, cu_seqlens) -> torch.Tensor:
        if self.fla_unsupported:
            raise ValueError(f"nsa layer {self.layer_idx}: {self.fla_unsupported}")
        return fla_nsa(q, k, v, *gates, self.block_size, self.block_count, self.window, cu_seqlens)

    def _reference(self, q, k, v, gates, key_pos, visible, q_slots) -> torch.Tensor:
        return naive_nsa(q, k, v, *gates, key_pos, visible, q_slots, self.block_size, self.block_count, self.window)

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: NSACache | None, spec: MixerSpec) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v, gates = project(self, x, self.input_projections)
        q = q.view(B, T, self.n_heads, self.head_dim)
        k = k.view(B, T, self.n_kv_heads, self.head_dim)
        v = v.view(B, T, self.n_kv_heads, self.head_dim)
        cos, sin = seq.rope(self.inv_freq, self.rope_theta)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        gates = torch.sigmoid(gates).view(B, T, self.n_heads, 3).unbind(-1)  # g_cmp, g_slc, g_swa

        fresh = cache is None or (T > 1 and seq.host_cache_len == T)  # whole sequences (from slot 0): fla runs them
        if fresh and seq.pad_mask is None and backend.use_fast(q, "fla"):
            o = self._fla(q, k, v, gates, seq.cu_seqlens)
            if cache is not None:
                cache.k[:, :T] = k.to(cache.k.dtype)
                cache.v[:, :T] = v.to(cache.v.dtype)
        elif cache is None:
            slots = torch.arange(T, device=x.device)
            visible = visibility(slots, slots, None, seq.pad_mask)[:, 0]
            if seq.cu_seqlens is not None:  # packed documents: blocks restart with every document
                key_pos = doc_offsets(seq.cu_seqlens, T)[None]
                visible = visible & ((slots - key_pos[0])[:, None] == (slots - key_pos[0])[None, :])
            else:
                key_pos = slots[None]
            o = self._reference(q, k, v, gates, key_pos, visible, slots)
        else:
            cache.k.index_copy_(1, seq.slots, k.to(cache.k.dtype))
            cache.v.index_copy_(1, seq.slots, v.to(cache.v.dtype))
            # prefill reads the slots written so far; decode the whole static buffer, masked (graph-capturable)
            end = seq.host_cache_len if seq.host_cache_len is not None else cache.k.shape[1]
            key_valid = seq.key_mask[:, :end]
            key_pos = key_valid.long().cumsum(1) - 1  # left padding only: position = real keys before - 1
            k_slots = torch.arange(end, device=x.device)
            visible = visibility(seq.slots, k_slots, None, key_valid)[:, 0]
            keys, values = cache.k[:, :end].to(q.dtype), cache.v[:, :end].to(q.dtype)
            o = self._reference(q, keys, values, gates, key_pos, visible, seq.slots)
        return self.wo(o.reshape(B, T, -1))
