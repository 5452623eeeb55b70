"""Rotary embeddings computed once per forward: SeqInfo.rope memoises cos/sin by (head dim, theta), so every
attention layer and loop of a looped model shares one table instead of recomputing it, with exactly the
numbers apply_rope gives.

Run: pytest tests/model/test_rope.py
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from lt2.mixers.base import SeqInfo
from lt2.model.layers import apply_rope, rope_frequencies, rotate
from lt2.testing import tiny_model


class CountCos(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func in (torch.cos, torch.Tensor.cos)
        return func(*args, **(kwargs or {}))


def test_rope_tables_equal_apply_rope_and_are_shared():
    gen = torch.Generator().manual_seed(0)
    positions = torch.randint(0, 500, (2, 13), generator=gen)
    seq = SeqInfo.for_training(positions)
    inv_freq = rope_frequencies(16, 10000.0)
    x = torch.randn(2, 13, 3, 16, generator=gen)
    assert torch.equal(rotate(x, *seq.rope(inv_freq, 10000.0)), apply_rope(x, positions, inv_freq))
    assert seq.rope(inv_freq.clone(), 10000.0)[0] is seq.rope(inv_freq, 10000.0)[0]  # memoised by (D, theta)
    other = seq.rope(rope_frequencies(16, 500.0), 500.0)[0]
    assert not torch.equal(other, seq.rope(inv_freq, 10000.0)[0])  # another theta, another table


@pytest.mark.parametrize("pattern", ["full", "interleave:1:1:gdn:full", "nsa", "retnet", "dsa"])
def test_rope_computed_once_per_forward(pattern):
    """One cos per training forward and per decode step and table (DSA: its indexer's rotary dims too), not
    one per attention layer and loop."""
    model = tiny_model(pattern, loop_count=3).float()
    tokens = torch.randint(0, 97, (2, 10))
    tables = 2 if pattern == "dsa" else 1
    with CountCos() as mode:
        model(tokens)
    assert mode.calls == tables
    _, state = model.prefill(tokens, max_len=12)
    with CountCos() as mode:
        model.step(tokens[:, 0], state)
    assert mode.calls == tables
