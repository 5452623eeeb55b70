"""Native Sparse Attention in plain PyTorch: the oracle and the CPU / cached path of the NSA mixer.

Parameterisation of fla 0.6's `parallel_nsa` (README.md beside this file has the math):
- compression: the key/value of block c is the mean of the block's BS keys/values (no learned MLP);
  a query attends to the complete blocks of its sequence, (c + 1) * BS - 1 <= t;
- selection: blocks ranked by the compressed attention probability summed over the query heads of a
  GQA group; block 0 and the query's current and previous blocks are always kept (score G); the top
  `block_count` are attended token-wise (causally), shared by the whole group;
- sliding window over the last `window` tokens (the query included);
- o = g_slc * o_slc + g_cmp * o_cmp + g_swa * o_swa, gates in [0, 1] per query head.

Everything is written densely over one key axis ("slots") with masks, so a single function serves the
training forward (packed documents included: blocks follow in-document positions), a prefill onto a
cache and a decode step over the whole static cache (tensors only, graph-capturable; it reads the whole
cache, like full attention, rather than keeping a compressed-block cache).

Shapes: B batch, Tq queries, Tk keys (slots), HQ query heads, H key/value heads, G = HQ // H, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lt2.kernels.topk import select_topk


def _masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float):
    """q [B, Tq, HQ, D], k/v [B, Tk, H, D], mask [B|1, H|1, Tq, Tk] -> (o [B, Tq, HQ, D], p [B, H, G, Tq, Tk]).

    Rows without a visible key give o = 0 and p = 0, with finite gradients (the row is softmaxed unmasked,
    then zeroed), e.g. the compressed branch before the first block is complete.
    """
    B, Tq, HQ, D = q.shape
    H = k.shape[2]
    scores = torch.einsum("bqhgd,bkhd->bhgqk", q.view(B, Tq, H, HQ // H, D), k) * scale
    mask = mask[:, :, None]  # [B|1, H|1, 1, Tq, Tk]
    seen = mask.any(-1, keepdim=True)
    p = scores.masked_fill(~(mask | ~seen), float("-inf")).softmax(-1) * seen
    o = torch.einsum("bhgqk,bkhd->bqhgd", p, v)
    return o.reshape(B, Tq, HQ, D), p


def block_means(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """[B, Tk, H, D] -> [B, Tk, H, D]: entry j is the mean of x[j : j + block_size] (zero-padded past the end).

    Read at the slot where a block starts, this is the block's compressed key/value.
    """
    B, Tk, H, D = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(B, H * D, Tk)
    means = F.avg_pool1d(F.pad(flat, (0, block_size - 1)), block_size, stride=1)
    return means.reshape(B, H, D, Tk).permute(0, 3, 1, 2)


def naive_nsa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g_cmp: torch.Tensor,
    g_slc: torch.Tensor,
    g_swa: torch.Tensor,
    key_pos: torch.Tensor,
    visible: torch.Tensor,
    q_slots: torch.Tensor,
    block_size: int,
    block_count: int,
    window: int,
    scale: float | None = None,
) -> torch.Tensor:
    """NSA output [B, Tq, HQ, D] (q's dtype), computed in fp32 (fp64 for fp64 inputs); differentiable.

    q [B, Tq, HQ, D]; k/v [B, Tk, H, D] with RoPE applied; g_* [B, Tq, HQ] branch gates (after sigmoid).
    key_pos [B, Tk] long: position of each key inside its own sequence (restarts per packed document;
        blocks are [c * BS, (c + 1) * BS) in these positions); any value at keys that are never visible.
    visible [B|1, Tq, Tk] bool: the key is causal, real and in the query's document.
    q_slots [Tq] long: each query's own slot on the key axis.

    >>> q, kv, g = torch.randn(1, 6, 4, 8), torch.randn(1, 6, 1, 8), torch.rand(1, 6, 4)
    >>> causal = torch.ones(6, 6, dtype=torch.bool).tril()[None]
    >>> naive_nsa(q, kv, kv, g, g, g, torch.arange(6)[None], causal, torch.arange(6), 2, 2, 3).shape
    torch.Size([1, 6, 4, 8])
    """
    B, Tq, HQ, D = q.shape
    Tk, H = k.shape[1], k.shape[2]
    G, BS = HQ // H, block_size
    scale = D**-0.5 if scale is None else scale
    dtype, ct = q.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    key_pos = key_pos.long()
    q_pos = key_pos[:, q_slots]  # [B, Tq]
    k_slots = torch.arange(Tk, device=q.device)

    # Blocks are named by the slot of their first token. A query's candidates are the visible block starts
    # (block number <= its own); a block is complete once its last token is at or before the query.
    is_start = (key_pos % BS == 0)[:, None, :]  # [B, 1, Tk]
    candidate = visible & is_start  # [B, Tq, Tk]
    age = q_pos[:, :, None] - key_pos[:, None, :]  # [B, Tq, Tk] tokens from a key to the query
    complete = candidate & (age >= BS - 1)

    # 1. compressed branch: attention over the mean-pooled complete blocks
    o_cmp, p_cmp = _masked_attention(q, block_means(k, BS), block_means(v, BS), complete[:, None], scale)

    # 2. selection: importance of a block = its compressed probability summed over the group's heads;
    #    block 0 and the current and previous blocks are forced in with the top score G (as fla does)
    q_block, k_block = (q_pos // BS)[:, :, None], (key_pos // BS)[:, None, :]
    forced = candidate & ((k_block == 0) | (k_block == q_block) | (k_block == q_block - 1))
    importance = torch.where(forced[:, None], float(G), p_cmp.sum(2))  # [B, H, Tq, Tk]
    chosen = select_topk(importance, candidate[:, None], block_count)  # [B, H, Tq, S] block-start slots
    picked = torch.zeros(B, H, Tq, Tk + 1, dtype=torch.bool, device=q.device)
    picked.scatter_(-1, chosen.where(chosen >= 0, Tk), True)  # unused picks land in the spare column Tk
    # every key looks up whether the block it belongs to (start slot = slot - pos % BS) was picked
    start_of = (k_slots[None, :] - key_pos % BS).clamp(0, Tk - 1)  # [B, Tk]
    in_picked = picked[..., :Tk].gather(-1, start_of[:, None, None, :].expand(B, H, Tq, Tk))
    o_slc, _ = _masked_attention(q, k, v, in_picked & visible[:, None], scale)

    # 3. sliding window over the last `window` tokens
    in_window = visible & ((q_slots[:, None] - k_slots[None, :]) < window)[None]
    o_swa, _ = _masked_attention(q, k, v, in_window[:, None], scale)

    o = g_slc.to(ct)[..., None] * o_slc + g_cmp.to(ct)[..., None] * o_cmp + g_swa.to(ct)[..., None] * o_swa
    return o.to(dtype)
