"""DeepSeek Sparse Attention (DeepSeek-V3.2) on a GQA softmax attention with RoPE.

    lightning indexer   I[t, s] = DI^-0.5 * sum_j w[t, j] * relu(q^I[t, j] . k^I[s]),  w = W_w x * HI^-0.5
    selection           the `topk` visible keys with the highest I (all of them when fewer are visible),
                        ties to the later key (lt2/kernels/topk.py), shared by every head of a query
    attention           softmax attention of the main heads over the selected keys only

The indexer has HI small query heads and one shared key head (LayerNorm on k^I, RoPE on the first half
of its dims, as in DeepSeek-V3.2); its input is detached, and the top-k passes no gradient, so the LM loss
never reaches it. It is trained by DeepSeek-V3.2's objective instead (sparse stage):

    L_I = mean_t KL(p_t || softmax(I_t[S_t])),   p_t = main attention over the selected keys S_t, averaged
                                                        over heads (= summed and renormalised), detached

whose gradient coef * (softmax(I_t) - p_t) / N is injected into the indexer's parameters during the model's
backward pass by an identity autograd Function on the mixer output (kernels/dsa/indexer.py). The mixer
therefore returns y exactly as any other mixer does, the training loop needs no extra loss term, and
`last_index_loss` holds the latest L_I (detached) for metrics. All of this runs only in training mode with
grad enabled. The injected gradient ignores any scaling of
the main loss (gradient accumulation, fp16 loss scaling); since only the indexer receives it, Adam makes
that immaterial up to gradient clipping.

Caches per (loop, layer): K/V of the main heads [B, max_len, Hkv, D] and the indexer keys [B, max_len, DI],
static, written in place at seq.slots. A decode step scores the whole cache (masked by key_mask and
causality), selects top-k and attends over the gathered keys: tensors only, graph-capturable.

Backends: the Triton kernels of lt2/kernels/dsa/parallel.py on CUDA (training, prefill, decode); the
pure-PyTorch oracles elsewhere. The indexer (scores, top-k, KL gradients) is chunked torch on both.
Softmax-attention's output gate (gated_attn) is not applied: the paper's code gates full-type layers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lt2.kernels import backend
from lt2.kernels.dsa import (
    index_kl,
    index_topk,
    inject_index_grad,
    naive_selected_probs,
    naive_sparse_attention,
)
from lt2.mixers.attention import visibility
from lt2.mixers.base import SeqInfo, doc_offsets, mean_visible_keys
from lt2.model.fuse import project
from lt2.model.layers import rope_frequencies, rotate
from lt2.model.pattern import MixerSpec


@dataclass
class DSACache:
    k: torch.Tensor  # [B, max_len, Hkv, D] main keys (RoPE applied)
    v: torch.Tensor  # [B, max_len, Hkv, D]
    k_index: torch.Tensor  # [B, max_len, DI] indexer keys (normed, RoPE applied)


class DeepSeekSparseAttention(nn.Module):
    input_projections = ("wq", "wk", "wv")  # one QKV matmul once fused (lt2.model.fuse); the indexer's stay apart

    def __init__(self, args, layer_idx: int):
        super().__init__()
        cfg = args.dsa
        self.layer_idx = layer_idx
        self.n_heads, self.head_dim = args.n_heads, args.head_dim
        self.n_kv_heads = cfg.n_kv_heads or args.n_kv_heads
        self.index_n_heads, self.index_head_dim = cfg.index_n_heads, cfg.index_head_dim
        self.topk, self.index_loss_coef = cfg.topk, cfg.index_loss_coef
        self.wq = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, args.dim, bias=False)
        # lightning indexer
        self.wq_index = nn.Linear(args.dim, self.index_n_heads * self.index_head_dim, bias=False)
        self.wk_index = nn.Linear(args.dim, self.index_head_dim, bias=False)
        self.k_index_norm = nn.LayerNorm(self.index_head_dim)
        self.w_index = nn.Linear(args.dim, self.index_n_heads, bias=False)
        self.rope_theta = args.rope_theta
        self.index_rope_dim = self.index_head_dim // 2
        self.register_buffer("inv_freq", rope_frequencies(self.head_dim, args.rope_theta), persistent=False)
        self.register_buffer("index_inv_freq", rope_frequencies(self.index_rope_dim, args.rope_theta), persistent=False)
        self.last_index_loss: torch.Tensor | None = None  # L_I of the latest training call (detached scalar)

    def reset_parameters(self) -> None:
        # recomputed after meta-device construction; the linears and the LayerNorm are initialised elsewhere
        self.inv_freq.copy_(rope_frequencies(self.head_dim, self.rope_theta))
        self.index_inv_freq.copy_(rope_frequencies(self.index_rope_dim, self.rope_theta))

    def init_cache(self, batch: int, max_len: int, device, dtype, spec: MixerSpec) -> DSACache:
        kv = (batch, max_len, self.n_kv_heads, self.head_dim)
        return DSACache(
            k=torch.zeros(kv, device=device, dtype=dtype),
            v=torch.zeros(kv, device=device, dtype=dtype),
            k_index=torch.zeros(batch, max_len, self.index_head_dim, device=device, dtype=dtype),
        )

    def mixing_flops(self, context: int, spec: MixerSpec) -> float:
        """Forward FLOPs per token beyond the projections, averaged over a causal sequence of `context`."""
        indexer = (2 * self.index_head_dim + 2) * self.index_n_heads * mean_visible_keys(context)  # q.k, relu, sum
        return indexer + 4.0 * self.n_heads * self.head_dim * mean_visible_keys(context, self.topk)

    def decode_bytes(self, context: int, spec: MixerSpec, dtype: torch.dtype) -> float:
        """Every indexer key is read (to score it), then K and V of the top-k selected keys only."""
        selected = min(context, self.topk)
        return float(context * self.index_head_dim + 2 * selected * self.n_kv_heads * self.head_dim) * dtype.itemsize

    # ------------------------------------------------------------------ pieces
    def _indexer(self, x: torch.Tensor, seq: SeqInfo):
        """Indexer queries [B, T, HI, DI], key [B, T, DI] and head weights [B, T, HI] from the detached input."""
        B, T, _ = x.shape
        x = x.detach()  # the indexer learns only from L_I (DeepSeek-V3.2), never from the LM loss
        r = self.index_rope_dim
        q = self.wq_index(x).view(B, T, self.index_n_heads, self.index_head_dim)
        k = self.k_index_norm(self.wk_index(x))[:, :, None]  # [B, T, 1, DI]
        cos, sin = seq.rope(self.index_inv_freq, self.rope_theta)  # [B, T, 1, r/2]
        q = torch.cat([rotate(q[..., :r], cos, sin), q[..., r:]], dim=-1)
        k = torch.cat([rotate(k[..., :r], cos, sin), k[..., r:]], dim=-1)
        w = self.w_index(x) * self.index_n_heads**-0.5
        return q, k[:, :, 0], w

    def _attend(self, q, k, v, indices, want_probs: bool):
        """Attention over the selected keys -> (o [B, Tq, H, D], head-averaged probabilities [B, Tq, S] or None)."""
        if backend.use_fast(q, "triton"):
            from lt2.kernels.dsa.parallel import parallel_selected_probs, parallel_sparse_attention

            o, lse = parallel_sparse_attention(q, k, v, indices, return_lse=True)
            probs = parallel_selected_probs(q.detach(), k.detach(), indices, lse) if want_probs else None
            return o, probs
        o, _ = naive_sparse_attention(q, k, v, indices)
        return o, naive_selected_probs(q, k, indices) if want_probs else None

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: DSACache | None, spec: MixerSpec) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = project(self, x, self.input_projections)
        q = q.view(B, T, self.n_heads, self.head_dim)
        k = k.view(B, T, self.n_kv_heads, self.head_dim)
        v = v.view(B, T, self.n_kv_heads, self.head_dim)
        cos, sin = seq.rope(self.inv_freq, self.rope_theta)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        q_index, k_index, w_index = self._indexer(x, seq)

        doc = None  # [Tk] first slot of each key's packed document
        if cache is None:
            keys, values, index_keys, key_valid = k, v, k_index, seq.pad_mask
            q_slots = torch.arange(T, device=x.device)
            if seq.cu_seqlens is not None:
                doc = q_slots - doc_offsets(seq.cu_seqlens, T)
        else:
            for buf, new in ((cache.k, k), (cache.v, v), (cache.k_index, k_index)):
                buf.index_copy_(1, seq.slots, new.to(buf.dtype))
            # prefill reads the slots written so far; decode the whole static buffer, masked (graph-capturable)
            end = seq.host_cache_len if seq.host_cache_len is not None else cache.k.shape[1]
            keys, values, index_keys = cache.k[:, :end], cache.v[:, :end], cache.k_index[:, :end]
            keys, values, index_keys = keys.to(q.dtype), values.to(q.dtype), index_keys.to(q.dtype)
            key_valid, q_slots = seq.key_mask[:, :end], seq.slots
        k_slots = torch.arange(keys.shape[1], device=x.device)

        def visible(rows: slice) -> torch.Tensor:  # [B or 1, n, Tk]: causal, real and in the same document
            mask = visibility(q_slots[rows], k_slots, None, key_valid)[:, 0]
            if doc is not None:
                mask = mask & (doc[q_slots[rows]][:, None] == doc[None, :])
            return mask

        indices, index_scores = index_topk(q_index, index_keys, w_index, self.topk, visible)
        train_index = self.training and cache is None and torch.is_grad_enabled() and self.wq_index.weight.requires_grad
        o, probs = self._attend(q, keys, values, indices, want_probs=train_index)
        if train_index:
            loss, grad = index_kl(index_scores, probs, indices)
            o = inject_index_grad(o, q_index, k_index, w_index, indices, self.index_loss_coef * grad)
            self.last_index_loss = loss.detach()
        return self.wo(o.reshape(B, T, -1))
