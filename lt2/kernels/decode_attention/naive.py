"""The oracle: one-query decode attention over a static KV cache as a masked softmax in PyTorch.

Which cache slots the query sees (query slot t = length - 1):

    full cache   slot j (0 <= j < S_max) iff j <= t and key_mask[b, j]
    window ring  ring entry j holds absolute slot s = slot_of[j]; visible iff s >= 0,
                 0 <= t - s < window and key_mask[b, s]

A row that sees no key at all (impossible in a real decode step: the query's own slot is always real)
gets a zero output rather than NaN, the same convention as the split-KV kernel.
"""

from __future__ import annotations

import torch


def visible_keys(
    length: torch.Tensor,
    key_mask: torch.Tensor,
    n_slots: int,
    window: int | None = None,
    slot_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool [B, n_slots]: which cache entries the query at slot length - 1 attends to (see the module doc)."""
    t = length.reshape(()).long() - 1
    if slot_of is None:
        slots = torch.arange(n_slots, device=key_mask.device)
        return key_mask[:, :n_slots] & (slots <= t)[None]
    slots = slot_of.long()
    dist = t - slots
    ok = (slots >= 0) & (slots < key_mask.shape[1]) & (dist >= 0) & (dist < window)
    real = key_mask.gather(1, slots.clamp(0, key_mask.shape[1] - 1)[None].expand(key_mask.shape[0], -1))
    return ok[None] & real


def naive_decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    length: torch.Tensor,
    key_mask: torch.Tensor,
    window: int | None = None,
    slot_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention of one query token per sequence over a static cache, in fp32 (fp64 for fp64).

    Args:
        q: [B, H, D] queries (RoPE applied), H = G * Hkv.
        k, v: [B, S, Hkv, D] the cache: S = S_max slots (full) or the ring's W entries (window).
        length: [1] integer, number of slots written (the query's own included); query slot = length - 1.
        key_mask: [B, L] bool, slots that hold real tokens (False: left padding); L = S for a full cache,
            the absolute slot range (max_len) for a ring.
        window: ring only, a key is visible iff 0 <= query slot - key slot < window.
        slot_of: ring only, [W] integer absolute slot of each ring entry, -1 when empty.
    Returns:
        o [B, H, D] in q's dtype; softmax scale D ** -0.5.

    >>> q, k = torch.randn(2, 4, 8), torch.randn(2, 16, 2, 8)
    >>> naive_decode_attention(q, k, k, torch.tensor([5]), torch.ones(2, 16, dtype=torch.bool)).shape
    torch.Size([2, 4, 8])
    """
    H, D = q.shape[1:]
    S, Hkv = k.shape[1], k.shape[2]
    dtype = torch.promote_types(q.dtype, torch.float32)
    keys = k.to(dtype).repeat_interleave(H // Hkv, dim=2)  # [B, S, H, D]: query head h reads kv head h // G
    values = v.to(dtype).repeat_interleave(H // Hkv, dim=2)
    scores = torch.einsum("bhd,bshd->bhs", q.to(dtype) * D**-0.5, keys)  # [B, H, S]
    visible = visible_keys(length, key_mask, S, window, slot_of)[:, None]  # [B, 1, S]
    scores = scores.masked_fill(~visible, float("-inf"))
    # Max over visible keys only; 0 for a row that sees nothing, so that exp(-inf - 0) = 0 and not NaN.
    top = scores.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    p = torch.exp(scores - top)  # [B, H, S]
    total = p.sum(-1, keepdim=True)
    o = torch.einsum("bhs,bshd->bhd", p / torch.where(total > 0, total, torch.ones_like(total)), values)
    return o.to(q.dtype)
