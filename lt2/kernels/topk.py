"""Deterministic top-k selection shared by the sparse-attention families (DSA keys, NSA blocks).

torch.topk leaves the order of tied scores unspecified, and ties are common here: a lightning-indexer
score is exactly 0 whenever every head's ReLU is 0, and NSA forces its always-kept blocks to one
score. An unspecified tie order would make the keys a query selects depend on the layout of the call
(a full forward over T keys versus one decode step over the whole cache), so decoding would stop
matching the forward pass. Ranking by the pair (score rounded to fp32, slot) fixes that: among equal
scores the later slot wins, which is also the more useful choice (recent context).

The pair is packed into one int64 so that a single torch.topk does the ranking:
    key = (order_preserving_int32(fp32 score) << 32) | slot
"""

from __future__ import annotations

import torch

_INT64_MIN = torch.iinfo(torch.int64).min


def rank_keys(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """int64 keys [..., N] that order `scores` [..., N] as (fp32 score, position) and put invalid entries last.

    valid [..., N] bool (broadcastable). Positions are the indices along the last dim (< 2**31).
    """
    s = scores.float() + 0.0  # -0.0 + 0.0 = +0.0: the two zeros would otherwise rank apart
    bits = s.view(torch.int32)
    # IEEE floats compare like sign-magnitude integers; flipping the magnitude bits of negatives makes the
    # int32 order match the float order.
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).long()
    position = torch.arange(scores.shape[-1], device=scores.device)
    keys = (ordered << 32) | position
    return keys.masked_fill(~valid, _INT64_MIN)


def select_topk(scores: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [..., min(k, N)] (int64) of the k best valid entries of scores [..., N]; -1 where fewer are valid.

    Ties go to the larger index. The indices come in no particular order (sorted=False is faster).

    >>> select_topk(torch.tensor([[0.0, 2.0, 0.0, 1.0]]), torch.tensor([[True, True, True, False]]), 2).sort().values
    tensor([[1, 2]])
    """
    valid = valid.expand_as(scores)
    keys = rank_keys(scores, valid)
    index = keys.topk(min(k, scores.shape[-1]), dim=-1, sorted=False).indices
    return torch.where(valid.gather(-1, index), index, -1)
