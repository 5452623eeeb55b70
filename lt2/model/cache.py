"""Decode state: one cache per (loop, layer), allocated once for (batch, max_len) and updated in place.

Loops never share a cache: loop 2 of layer 5 runs its mixer on different hidden states than loop 1,
so its keys/values (or recurrent state) differ and get their own slot, `caches[loop][layer]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class DecodeState:
    """Everything `LoopedLM.step` needs to continue a batch of sequences.

    caches[loop][layer]: that mixer's cache (see its `init_cache`).
    specs[loop][layer]: the mixers these caches were allocated for (one placement of a random layout).
    votes: further members of a K-sample vote (random layouts), each with its own placement and caches.
    key_mask [B, max_len] bool: slots holding real tokens (left padding stays False).
    positions [B] long: rotary position of each row's next token.
    index [1] long: next cache slot (device copy of `length`, for graph-captured decode).
    length: host copy of the number of slots used.
    """

    caches: list[list[Any]]
    key_mask: torch.Tensor
    positions: torch.Tensor
    index: torch.Tensor
    max_len: int
    specs: Any = None
    length: int = 0
    votes: list[DecodeState] = field(default_factory=list)

    @property
    def members(self) -> list[DecodeState]:
        return [self, *self.votes]

    @property
    def batch_size(self) -> int:
        return self.key_mask.shape[0]

    def check_room(self, n: int) -> None:
        if self.length + n > self.max_len:
            raise ValueError(
                f"decode state holds {self.length} of max_len={self.max_len} slots; {n} more do not fit "
                "(allocate a larger state with max_len=...)"
            )
