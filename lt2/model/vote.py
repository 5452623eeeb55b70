"""Random layouts at inference: a K-sample vote over fixed placements of the mixers.

A random layout (`random:w:f`) trains on a fresh placement of full/window attention per step; at inference it
averages the logits of `vote_k` fixed placements (`LoopedLM.vote_draws`). Decoding keeps K plain decode states,
one per placement, runs each through the ordinary decode path and averages their logits; nothing of the vote
reaches the mixers or the single-state path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lt2.model.cache import DecodeState


@dataclass
class VoteState:
    """K decode states, members[k] for placement k; the batch, room and write position are the members'."""

    members: list[DecodeState]

    @property
    def caches(self) -> list:
        """Every member's caches: members x [loop][layer]."""
        return [member.caches for member in self.members]

    @property
    def batch_size(self) -> int:
        return self.members[0].batch_size

    @property
    def max_len(self) -> int:
        return self.members[0].max_len

    @property
    def length(self) -> int:
        return self.members[0].length

    def check_room(self, n: int) -> None:
        self.members[0].check_room(n)

    def count(self, n: int) -> None:
        for member in self.members:
            member.count(n)

    def reset(self) -> None:
        for member in self.members:
            member.reset()

    def mean(self, logits_of: Callable[[DecodeState], torch.Tensor]) -> torch.Tensor:
        """The vote: `logits_of(member)` averaged over the members."""
        total = logits_of(self.members[0])
        for member in self.members[1:]:  # a plain loop: torch.compile traces it without a graph break
            total = total + logits_of(member)
        return total / len(self.members)
