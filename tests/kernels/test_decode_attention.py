"""Split-KV decode attention (lt2.kernels.decode_attention) on CPU through Triton's interpreter, in fp32.

- kernel vs the masked-softmax oracle over a static buffer larger than the valid length: 1, 63, 65 and 500
  valid slots, head dims 64 and 96, GQA groups 1 and 4, left-padded rows, the default split count and
  forced ones (7; 64, where most splits are empty), a cache filled to its last slot; window rings partly
  filled, wrapped, with windows smaller than, equal to and larger than the ring; each for several
  consecutive decode steps that write the new token into the cache first;
- slots the query must not see hold large garbage, so reading one fails; uninitialised memory (the
  output and the fp32 partials) is poisoned with NaN, so an unwritten element fails;
- the oracle against the attention mixer's own masking and SDPA (lt2.mixers.attention);
- argument checks raise ValueError naming the bad shape.

The kernel checks run in a TRITON_INTERPRET=1 worker process (fixture `interpreted`, tests/kernels/conftest.py),
so the interpreter never leaks into other test modules.

Run: pytest tests/kernels/test_decode_attention.py
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lt2.kernels.decode_attention import naive_decode_attention
from lt2.mixers.attention import masked_attention, visibility
from lt2.testing import assert_close

RTOL = 1e-5  # fp32 kernel vs fp32 oracle: summation order only
GARBAGE = 100.0  # scale of the values in slots the query must not see


def _poisoned() -> None:
    """From now on torch.empty fills float memory with NaN (and ints with their max) in this process."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=gen)


def check_full_cache(B, H, Hkv, D, S_max, length, pad, n_splits, steps):
    """Worker side: decode `steps` tokens after a `length`-slot prompt; the last row is left-padded by `pad`."""
    from lt2.kernels.decode_attention import decode_attention

    _poisoned()
    gen = torch.Generator().manual_seed(1000 * length + S_max + D)
    k, v = _randn(gen, B, S_max, Hkv, D, scale=GARBAGE), _randn(gen, B, S_max, Hkv, D, scale=GARBAGE)
    k[:, :length], v[:, :length] = _randn(gen, B, length, Hkv, D), _randn(gen, B, length, Hkv, D)
    key_mask = torch.zeros(B, S_max, dtype=torch.bool)
    key_mask[:, :length] = True
    key_mask[-1, :pad] = False
    for step in range(steps):
        if step:  # the mixer writes the new token's key/value before attending
            slot = length - 1
            k[:, slot], v[:, slot] = _randn(gen, B, Hkv, D), _randn(gen, B, Hkv, D)
            key_mask[:, slot] = True
        q = _randn(gen, B, H, D)
        n = torch.tensor([length])
        o = decode_attention(q, k, v, n, key_mask, n_splits=n_splits)
        assert_close(f"o (length {length})", o, naive_decode_attention(q, k, v, n, key_mask), rtol=RTOL)
        length += 1


def check_ring(B, H, Hkv, D, W, window, length, pad, steps, max_len=256):
    """Worker side: a ring of W entries that saw slots 0..length-1 (entry = slot % W), then `steps` more."""
    from lt2.kernels.decode_attention import decode_attention

    _poisoned()
    gen = torch.Generator().manual_seed(1000 * length + W + window)
    k, v = _randn(gen, B, W, Hkv, D, scale=GARBAGE), _randn(gen, B, W, Hkv, D, scale=GARBAGE)
    slot_of = torch.full((W,), -1, dtype=torch.long)
    key_mask = torch.zeros(B, max_len, dtype=torch.bool)
    key_mask[-1, :pad] = False

    def write(slot: int) -> None:
        k[:, slot % W], v[:, slot % W] = _randn(gen, B, Hkv, D), _randn(gen, B, Hkv, D)
        slot_of[slot % W] = slot
        key_mask[:, slot] = True
        key_mask[-1, :pad] = False

    for slot in range(length - 1):
        write(slot)
    for _ in range(steps):
        write(length - 1)
        q = _randn(gen, B, H, D)
        n = torch.tensor([length])
        o = decode_attention(q, k, v, n, key_mask, window=window, slot_of=slot_of)
        expected = naive_decode_attention(q, k, v, n, key_mask, window=window, slot_of=slot_of)
        assert_close(f"o (length {length})", o, expected, rtol=RTOL)
        length += 1


# B, H, Hkv, D, S_max, valid length, left pad of the last row, n_splits
FULL = [
    (2, 4, 4, 64, 600, 1, 0, None),
    (2, 4, 4, 64, 600, 63, 0, None),
    (2, 8, 2, 64, 600, 65, 17, None),
    (2, 4, 1, 96, 600, 500, 0, None),
    (1, 4, 4, 96, 600, 500, 123, 7),
    (2, 8, 2, 96, 130, 63, 5, 64),
    (2, 4, 4, 64, 67, 64, 3, None),  # the steps fill the buffer to its last slot
]


@pytest.mark.parametrize(
    "B, H, Hkv, D, S_max, length, pad, n_splits",
    FULL,
    ids=[f"B{b}-H{h}-Hkv{hk}-D{d}-S{s}-len{n}-pad{p}-ns{ns}" for b, h, hk, d, s, n, p, ns in FULL],
)
def test_full_cache_matches_oracle(interpreted, B, H, Hkv, D, S_max, length, pad, n_splits):
    interpreted(check_full_cache, B, H, Hkv, D, S_max, length, pad, n_splits, steps=3)


# B, H, Hkv, D, ring entries W, window, valid length before the steps, left pad of the last row
RING = [
    (2, 4, 4, 64, 32, 32, 1, 0),  # nearly empty ring
    (2, 8, 2, 64, 32, 32, 20, 0),  # partly filled
    (2, 8, 2, 96, 32, 32, 77, 70),  # wrapped; the last row sees only slots >= 70
    (2, 4, 4, 64, 32, 24, 77, 0),  # window shorter than the ring
    (1, 4, 1, 64, 32, 40, 100, 0),  # window longer than the ring (max_len < window in the mixer)
    (2, 4, 4, 64, 40, 40, 150, 3),  # W not a power of two
]


@pytest.mark.parametrize(
    "B, H, Hkv, D, W, window, length, pad",
    RING,
    ids=[f"B{b}-H{h}-Hkv{hk}-D{d}-W{w}-win{win}-len{n}-pad{p}" for b, h, hk, d, w, win, n, p in RING],
)
def test_ring_matches_oracle(interpreted, B, H, Hkv, D, W, window, length, pad):
    interpreted(check_ring, B, H, Hkv, D, W, window, length, pad, steps=3)


def check_no_visible_key():
    """Worker side: a row that sees no key (all padding) gets zeros, as the oracle does, and not NaN."""
    from lt2.kernels.decode_attention import decode_attention

    _poisoned()
    gen = torch.Generator().manual_seed(5)
    q, k, v = _randn(gen, 2, 4, 64), _randn(gen, 2, 64, 4, 64), _randn(gen, 2, 64, 4, 64)
    key_mask = torch.ones(2, 64, dtype=torch.bool)
    key_mask[1] = False
    o = decode_attention(q, k, v, torch.tensor([40]), key_mask, n_splits=4)
    assert torch.equal(o[1], torch.zeros_like(o[1])), "a row without visible keys must be zero"
    assert_close("o", o, naive_decode_attention(q, k, v, torch.tensor([40]), key_mask), rtol=RTOL)


def test_row_without_visible_keys_is_zero(interpreted):
    interpreted(check_no_visible_key)


@pytest.mark.parametrize("ring", [False, True], ids=["full", "ring"])
def test_oracle_matches_attention_mixer_masking(ring):
    """The oracle's visibility rule equals the attention mixer's (visibility + masked SDPA), in fp64."""
    gen = torch.Generator().manual_seed(3)
    B, H, Hkv, D, max_len, t = 3, 8, 2, 16, 90, 70
    key_mask = torch.ones(B, max_len, dtype=torch.bool)
    key_mask[1, :9], key_mask[2, :66] = False, False
    key_mask[:, t + 1 :] = False
    q = torch.randn(B, H, D, generator=gen, dtype=torch.float64)
    query_slot = torch.tensor([t])
    if ring:
        W, window = 16, 16
        slot_of = torch.arange(t - W + 1, t + 1).roll(t + 1)  # entry j holds the slot s <= t with s % W == j
        assert (slot_of % W == torch.arange(W)).all()
        k, v = (torch.randn(B, W, Hkv, D, generator=gen, dtype=torch.float64) for _ in range(2))
        valid = (slot_of >= 0)[None] & key_mask.gather(1, slot_of.clamp(min=0).expand(B, -1))
        mask = visibility(query_slot, slot_of, window, valid)
        expected = naive_decode_attention(q, k, v, query_slot + 1, key_mask, window=window, slot_of=slot_of)
    else:
        k, v = (torch.randn(B, max_len, Hkv, D, generator=gen, dtype=torch.float64) for _ in range(2))
        mask = visibility(query_slot, torch.arange(max_len), None, key_mask)
        expected = naive_decode_attention(q, k, v, query_slot + 1, key_mask)
    mixer = masked_attention(q[:, None], k, v, mask)[:, 0]
    assert_close("oracle vs mixer", expected, mixer, rtol=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton (pip install lt2[triton])")
def test_argument_checks_name_the_bad_shape():
    """Checks run before any launch, so this needs triton importable but not the interpreter."""
    from lt2.kernels.decode_attention import decode_attention

    B, H, Hkv, D, S = 2, 4, 2, 16, 32
    q, k, v = torch.randn(B, H, D), torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    n, mask = torch.tensor([5]), torch.ones(B, S, dtype=torch.bool)
    slot_of = torch.full((S,), -1)
    bad = [
        (dict(q=q[:, :, None]), r"q must be \[B, H, D\]"),
        (dict(k=k[:, :, :, :8]), r"k must be \[B, S, Hkv, D\] = \[2, S, Hkv, 16\]"),
        (dict(v=v[:, :16]), r"v shape \(2, 16, 2, 16\) != k shape"),
        (dict(q=torch.randn(B, 3, D)), r"H=3 must be a multiple of the k/v heads Hkv=2"),
        (dict(length=torch.tensor(5)), r"length must be a \[1\] int64"),
        (dict(length=torch.tensor([5.0])), r"length must be a \[1\] int64"),
        (dict(key_mask=mask.int()), r"key_mask must be \[B, L\] = \[2, L\] bool"),
        (dict(key_mask=mask[:, :16]), r"key_mask must be \[B, S_max\] = \[2, 32\]"),
        (dict(window=8), r"window and slot_of go together"),
        (dict(slot_of=slot_of), r"window and slot_of go together"),
        (dict(window=8, slot_of=slot_of[:8]), r"slot_of must be \[W\] = \[32\]"),
        (dict(window=0, slot_of=slot_of), r"window must be >= 1"),
        (dict(n_splits=0), r"n_splits must lie in \[1, 64\]"),
        (dict(k=k.half(), v=v.half(), q=q.double()), r"fp16/bf16/fp32"),
        (dict(q=q.clone().requires_grad_()), r"no backward"),
    ]
    for override, message in bad:
        args = dict(q=q, k=k, v=v, length=n, key_mask=mask) | override
        with pytest.raises(ValueError, match=message):
            decode_attention(**args)
