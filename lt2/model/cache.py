"""Decode state: one cache per (loop, layer), allocated once for (batch, max_len) and updated in place.

Loops never share a cache: loop 2 of layer 5 runs its mixer on different hidden states than loop 1,
so its keys/values (or recurrent state) differ and get their own slot, `caches[loop][layer]`.

Bookkeeping, as gpt-fast's `input_pos`: one write position (`index`, the next cache slot, the same for every
row because prompts are left padded) and each row's rotary position (`positions`, which skips padding).
`seq_info` describes the next tokens to the mixers; `advance` moves both counters once they are in, on the
device (inside a captured decode step); `count` keeps the host's copy of the write position (`length`),
outside any graph, for the room check and prefill's slicing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lt2.mixers.base import SeqInfo, cache_tensors


@dataclass
class DecodeState:
    """Everything `LoopedLM.decode_step` needs to continue a batch of sequences (one placement of the mixers).

    caches[loop][layer]: that mixer's cache (see its `init_cache`).
    specs[loop][layer]: the mixers these caches were allocated for.
    key_mask [B, max_len] bool: slots holding real tokens (left padding stays False).
    positions [B] long: rotary position of each row's next token.
    index [1] long: the write position, i.e. the next cache slot (on the device: graph-captured decode).
    length: host copy of `index` (slots used).
    """

    caches: list[list[Any]]
    key_mask: torch.Tensor
    positions: torch.Tensor
    index: torch.Tensor
    max_len: int
    specs: Any = None
    length: int = 0

    @property
    def batch_size(self) -> int:
        return self.key_mask.shape[0]

    def check_room(self, n: int) -> None:
        if self.length + n > self.max_len:
            raise ValueError(
                f"decode state holds {self.length} of max_len={self.max_len} slots; {n} more do not fit "
                "(allocate a larger state with max_len=...)"
            )

    def seq_info(self, real: torch.Tensor | None = None, pad_mask: torch.Tensor | None = None) -> SeqInfo:
        """The SeqInfo of the next tokens, whose slots it marks in `key_mask`.

        real [B, T] bool (True = real token): a prompt chunk at the host's write position `length`
        (SeqInfo.for_prefill). None: one decode token at the device's write position `index`, described by
        device tensors only, so that no host value is baked into a captured step (SeqInfo.for_decode).
        """
        if real is None:
            self.key_mask.index_fill_(1, self.index, True)
            return SeqInfo.for_decode(self.positions[:, None], self.index, self.key_mask)
        positions = self.positions[:, None] + (real.long().cumsum(1) - 1).clamp(min=0)
        seq = SeqInfo.for_prefill(positions, self.length, self.key_mask, pad_mask)
        self.key_mask[:, seq.slots] = real
        return seq

    def advance(self, n: int, real: torch.Tensor | None = None) -> None:
        """On the device, after `n` tokens went in: the write position moves `n` slots, each row's position by
        its real tokens (real [B, n] bool; None: all real)."""
        self.positions += n if real is None else real.sum(1)
        self.index += n

    def count(self, n: int) -> None:
        """On the host, after `n` tokens went in (outside a captured step): the copy of the write position."""
        self.length += n

    def reset(self) -> None:
        """Empty every cache in place (same buffers, so a captured graph stays valid).

        Cache tensors start at zero and integer ones (slot indices, e.g. a window ring's) at -1: empty.
        """
        for tensor in cache_tensors(self.caches):
            tensor.fill_(-1) if tensor.dtype == torch.long else tensor.zero_()
        self.key_mask.zero_()
        self.positions.zero_()
        self.index.zero_()
        self.length = 0
