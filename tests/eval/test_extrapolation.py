"""Evaluating beyond the training length: a model whose max_seqlen (training context) is 32 prefills and
decodes a 2x-longer sequence with caches sized from the evaluation length, equal to its full forward (no
crash, no silent truncation; RoPE positions past 32 used as they are).

pytest tests/eval/test_extrapolation.py
"""

from __future__ import annotations

import pytest
import torch

from lt2.testing import assert_close, incremental_logits, tiny_model

TRAIN_LEN = 32


@pytest.mark.parametrize("pattern", ["full", "swa=16", "dsa", "gdn", "interleave:1:1:gdn:dsa", "mamba2"])
def test_decode_at_twice_the_training_length_equals_forward(pattern):
    model = tiny_model(pattern, max_seqlen=TRAIN_LEN, window=16)
    tokens = torch.randint(0, model.args.vocab_size, (2, 2 * TRAIN_LEN + 3))
    with torch.no_grad():
        full = model(tokens)
    state = model.allocate_state(2, tokens.shape[1])  # sized from the evaluation length
    assert state.max_len == 2 * TRAIN_LEN + 3 > model.args.max_seqlen
    assert_close(pattern, incremental_logits(model, tokens, [TRAIN_LEN + 5]), full)  # the decode tests' tolerances


def test_a_context_above_the_decode_cache_is_refused_naming_the_limit():
    model = tiny_model("full", max_seqlen=TRAIN_LEN)
    tokens = torch.randint(0, model.args.vocab_size, (1, 40))
    with pytest.raises(ValueError, match="max_len=36"):
        model.prefill(tokens, model.allocate_state(1, 36))
