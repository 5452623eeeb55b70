"""DSA oracles in plain PyTorch: the lightning indexer's dense scores and softmax attention over selected keys.

These read like the math (README.md beside this file) and are the CPU path of the DSA mixer as well as
the reference the Triton kernels in parallel.py are checked against.

Shapes: B batch, Tq queries, Tk keys, HQ query heads, H key/value heads (G = HQ // H query heads share
one), D head dim, S selected keys per query, HI indexer heads, DI indexer head dim.
"""

from __future__ import annotations

import torch

from lt2.kernels.common import compute_dtype


def naive_index_scores(q: torch.Tensor, k: torch.Tensor, w: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Lightning-indexer scores I[b, t, s] = scale * sum_j w[b, t, j] * relu(q[b, t, j] . k[b, s]), unmasked.

    q [B, Tq, HI, DI], k [B, Tk, DI] (one key head shared by all indexer heads), w [B, Tq, HI]
    -> [B, Tq, Tk] in fp32 (fp64 for fp64 inputs). scale defaults to DI ** -0.5 (DeepSeek-V3.2).

    >>> naive_index_scores(torch.ones(1, 2, 4, 8), torch.ones(1, 3, 8), torch.ones(1, 2, 4)).shape
    torch.Size([1, 2, 3])
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    ct = compute_dtype(q)
    logits = torch.einsum("bqhd,bkd->bhqk", q.to(ct), k.to(ct))  # [B, HI, Tq, Tk]
    return scale * torch.einsum("bhqk,bqh->bqk", logits.relu(), w.to(ct))


def _selected_scores(q: torch.Tensor, k: torch.Tensor, indices: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled scores [B, Tq, H, G, S] of every query head against its selected keys, -inf at unused slots."""
    B, Tq, HQ, D = q.shape
    H = k.shape[2]
    ct = compute_dtype(q)
    rows = torch.arange(B, device=q.device)[:, None, None]
    # upcast before gathering: the gather's backward sums every query's contribution to a key, in fp32
    k_sel = k.to(ct)[rows, indices.clamp(min=0).long()]  # [B, Tq, S, H, D]
    scores = torch.einsum("bqhgd,bqshd->bqhgs", q.view(B, Tq, H, HQ // H, D).to(ct), k_sel) * scale
    return scores.masked_fill((indices < 0)[:, :, None, None, :], float("-inf"))


def naive_sparse_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of every query over its selected keys only (differentiable in q, k, v).

    q [B, Tq, HQ, D], k/v [B, Tk, H, D]; indices [B, Tq, S] key positions, -1 for unused slots, shared by
    all heads of a query; each query needs at least one valid index. Returns o [B, Tq, HQ, D] in q's dtype
    and lse [B, Tq, HQ] (log-sum-exp of the scaled scores) in the compute dtype.

    >>> q, kv = torch.randn(1, 2, 4, 8), torch.randn(1, 5, 2, 8)
    >>> naive_sparse_attention(q, kv, kv, torch.tensor([[[0, -1], [1, 0]]]))[0].shape
    torch.Size([1, 2, 4, 8])
    """
    B, Tq, HQ, D = q.shape
    scale = D**-0.5 if scale is None else scale
    scores = _selected_scores(q, k, indices, scale)
    lse = scores.logsumexp(-1)  # [B, Tq, H, G]
    probs = (scores - lse[..., None]).exp()
    rows = torch.arange(B, device=q.device)[:, None, None]
    v_sel = v.to(probs.dtype)[rows, indices.clamp(min=0).long()]  # [B, Tq, S, H, D]
    o = torch.einsum("bqhgs,bqshd->bqhgd", probs, v_sel)
    return o.reshape(B, Tq, HQ, D).to(q.dtype), lse.reshape(B, Tq, HQ)


def naive_selected_probs(
    q: torch.Tensor, k: torch.Tensor, indices: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Attention distribution over the selected keys, averaged over the HQ query heads: [B, Tq, S].

    This is the target of the indexer's KL objective (sum over heads, renormalised = mean over heads,
    since every head's distribution sums to one); unused slots get 0. Not differentiable by design.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    with torch.no_grad():
        scores = _selected_scores(q, k, indices, scale)
        return scores.softmax(-1).mean(dim=(2, 3))
