"""Incremental decoding equals the full forward pass, for every mixer and hybrid layout.

prefill(prompt) + one-token steps must reproduce forward() logits (~1e-5 relative) for loop_count 1, 2
and 4, for prompts that split at one token, unevenly, and across the 64-token kernel chunks; greedy
generation must be token-identical; a row's logits must not depend on the other rows of its batch,
their lengths or the padding side; packed documents must equal each document alone.

Run: pytest tests/model/test_decode.py   (every family; -k gdn for one)
"""

from __future__ import annotations

import pytest
import torch

from lt2.testing import assert_close, incremental_logits, packed_and_alone, padded_rows_and_alone, tiny_model

FAMILY_PATTERNS = ["full", "window", "gdn", "kda", "deltanet", "mamba2", "hgrn2", "retnet", "nsa", "dsa"]
HYBRID_PATTERNS = [
    "interleave:1:1:gdn:full",  # LT2-hybrid Full+GDN at tiny depth
    "interleave:1:1:gdn:dsa",  # LT2-hybrid GDN+DSA
    "bookend:full:gdn",
    "swa=4->swa=8->swa=16->full",  # loop-level schedule (loop_count 4)
    "full->swa=16->swa=8->swa=4",  # and its reverse
    "random:3:1",  # random full/window placement, K-sample vote at inference
    "front:1:full:gdn",
]
ALL_PATTERNS = FAMILY_PATTERNS + HYBRID_PATTERNS
# Recurrent states and decays are kept in fp32 by design, even in an fp64 model: ~1e-7 relative noise.
TOL = dict(rtol=1e-5, atol=1e-6)


def loop_count_for(pattern: str, wanted: int) -> int:
    return pattern.count("->") + 1 if "->" in pattern else wanted


@pytest.mark.parametrize("loop_count", [1, 2, 4])
@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_prefill_then_decode_equals_forward(pattern, loop_count):
    model = tiny_model(pattern, loop_count_for(pattern, loop_count))
    tokens = torch.randint(0, 97, (2, 40))
    full = model(tokens)
    for splits in ([1], [17], [5, 23], [39]):  # one token, uneven, prefill onto an existing cache, all but one
        assert_close(f"{pattern} splits={splits}", incremental_logits(model, tokens, splits), full, **TOL)


@pytest.mark.parametrize("prompt_len", [63, 64, 65, 127, 128, 129])
@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_chunk_boundaries(pattern, prompt_len):
    model = tiny_model(pattern, loop_count_for(pattern, 2))
    tokens = torch.randint(0, 97, (1, prompt_len + 3))
    full = model(tokens)
    assert_close(f"{pattern} T={prompt_len}", incremental_logits(model, tokens, [prompt_len]), full, **TOL)
    # a second prefill that starts mid-chunk and ends at or past the next chunk edge
    assert_close(f"{pattern} T=30+", incremental_logits(model, tokens, [30, prompt_len]), full, **TOL)


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_greedy_generation_token_identical(pattern):
    model = tiny_model(pattern, loop_count_for(pattern, 2))
    tokens = torch.randint(0, 97, (2, 8))
    logits, state = model.prefill(tokens, max_len=8 + 64)
    generated = [logits[:, -1].argmax(-1)]
    for _ in range(63):
        logits, state = model.step(generated[-1], state)
        generated.append(logits.argmax(-1))
    sequence = torch.cat([tokens, torch.stack(generated, 1)], 1)
    # Greedy without a cache picks argmax of the full forward at every position; one teacher-forced
    # forward over the generated sequence checks all 64 choices at once.
    assert torch.equal(model(sequence[:, :-1])[:, 7:].argmax(-1), sequence[:, 8:])


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_rows_independent_of_batch_lengths_and_padding_side(pattern):
    model = tiny_model(pattern, loop_count_for(pattern, 2))
    for name, batched, alone in padded_rows_and_alone(model, [70, 11, 1, 24], steps=5):
        assert_close(f"{pattern} {name}", batched, alone, **TOL)


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_packed_documents_equal_documents_alone(pattern):
    model = tiny_model(pattern, loop_count_for(pattern, 2))
    tokens = torch.randint(0, 97, (2, 140))
    # a one-token document, edges on and off the 64-token chunk boundaries
    for name, packed, alone in packed_and_alone(model, tokens, {0: [0, 1, 9, 65, 130], 1: [0, 64, 136]}):
        assert_close(f"{pattern} {name}", packed, alone, **TOL)


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_gradients_reach_every_parameter(pattern):
    model = tiny_model(pattern, loop_count_for(pattern, 2)).train()
    tokens = torch.randint(0, 97, (2, 48))
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"no gradient reaches: {dead}"


def test_random_layout_trains_on_fresh_draws_and_votes_at_inference():
    model = tiny_model("random:1:1", 2, vote_k=3, window=4)
    tokens = torch.randint(0, 97, (1, 12))
    model.train()
    first, second = model(tokens), model(tokens)
    assert int(model.layout_step) == 2 and not torch.allclose(first, second)
    model.eval()
    seq = model.seq_info(tokens)
    members = [model.output(model.hidden_states(tokens, seq, specs=d)) for d in model.vote_draws()]
    assert len(members) == 3 and not torch.allclose(members[0], members[1])
    assert_close("vote = mean of member logits", model(tokens), sum(members) / 3, **TOL)
    assert "layout_step" in model.state_dict()  # the draw sequence resumes exactly


def test_decode_state_overflow_is_a_clear_error():
    model = tiny_model("full", 1)
    _, state = model.prefill(torch.randint(0, 97, (1, 4)), max_len=5)
    model.step(torch.tensor([1]), state)
    with pytest.raises(ValueError, match="max_len=5"):
        model.step(torch.tensor([1]), state)


def test_right_padding_is_rejected_with_advice():
    model = tiny_model("full", 1)
    pad_mask = torch.tensor([[True, True, False]])
    with pytest.raises(ValueError, match="left_align"):
        model.prefill(torch.zeros(1, 3, dtype=torch.long), pad_mask=pad_mask)


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_bf16_decode_follows_the_bf16_forward(pattern):
    """A bf16 model decodes on the CPU reference paths too (every mixer returns its input dtype), and the
    cached path stays within bf16 rounding of the uncached one."""
    model = tiny_model(pattern, loop_count_for(pattern, 2)).to(torch.bfloat16)
    tokens = torch.randint(0, 97, (2, 24))
    full = model(tokens).float()
    assert_close(f"{pattern} bf16", incremental_logits(model, tokens, [9]).float(), full, rtol=3e-2, atol=0)
