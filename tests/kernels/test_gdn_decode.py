"""The fused gated-DeltaNet decode step (lt2.kernels.gdn_decode) on CPU through Triton's interpreter, in fp32.

- kernel vs the step-by-step oracle for several consecutive steps: y, the three conv caches and the state
  after every step, at the 0.6B and 1.3B head dims (48/96 and 96/192, a few heads), odd non-power-of-two
  dims (20/36), conv sizes 4, 3, 2 and 1, with and without the output gate, strong and weak decays;
- uninitialised memory (y and the o scratch) is poisoned with NaN, so an unwritten element fails;
- a left-padded row (zero inputs from a zero state) stays exactly zero, as the model relies on;
- the oracle against the repository's own pieces: ShortConv's decode step, and the GatedDeltaNet
  mixer's whole decode branch (skipped while that module is not importable);
- the token's inputs as column slices of one fused projection output (row stride > row length) give the
  same results as contiguous ones;
- argument checks raise ValueError naming the bad argument.

The kernel checks run in a TRITON_INTERPRET=1 worker process (fixture `interpreted`, tests/kernels/conftest.py),
so the interpreter never leaks into other test modules.

Run: pytest tests/kernels/test_gdn_decode.py
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from lt2.kernels.gdn_decode import GDNDecodeStep, naive_gdn_decode_step
from lt2.kernels.gdn_decode.naive import conv_step
from lt2.mixers.base import ShortConv
from lt2.testing import assert_close, random_gdn_decode_step

RTOL = 1e-5  # fp32 kernel vs fp32 oracle: summation order only


def as_fused_slices(step: GDNDecodeStep) -> GDNDecodeStep:
    """The step with its token inputs as column slices of one [B, sum_out] tensor, as fused projections give."""
    names = [n for n in GDNDecodeStep.TOKEN if getattr(step, n) is not None]
    packed = torch.cat([getattr(step, n) for n in names], dim=1)
    views = packed.split([getattr(step, n).shape[1] for n in names], dim=1)
    assert not any(v.is_contiguous() for v in views if v.shape[0] > 1)
    return dataclasses.replace(step, **dict(zip(names, views, strict=True)))


def check_steps(B, H, Dk, Dv, K, gate, decay, steps, neg_eigval=False, fused_inputs=False):
    """Worker side: `steps` consecutive steps, kernel and oracle each on their own caches and state; with
    fused_inputs the kernel reads the token's inputs as slices of one fused projection output."""
    from lt2.kernels.gdn_decode import fused_gdn_decode_step

    torch.use_deterministic_algorithms(True, warn_only=True)  # torch.empty now fills with NaN
    torch.utils.deterministic.fill_uninitialized_memory = True
    gen = torch.Generator().manual_seed(B * 1000 + Dk * 10 + K)
    kernel = random_gdn_decode_step(B, H, Dk, Dv, K, gate=gate, decay=decay, generator=gen)
    kernel.allow_neg_eigval = neg_eigval
    oracle = kernel.clone_in_place()
    for step in range(steps):
        if step:  # a new token: fresh projections, same weights, caches and state carried over
            fresh = random_gdn_decode_step(B, H, Dk, Dv, K, gate=gate, decay=decay, generator=gen)
            kernel, oracle = kernel.with_token(fresh), oracle.with_token(fresh)
        if fused_inputs:
            kernel = as_fused_slices(kernel)
        y = fused_gdn_decode_step(kernel)
        expected = naive_gdn_decode_step(oracle)
        assert_close(f"y (step {step})", y, expected, rtol=RTOL)
        for name in GDNDecodeStep.IN_PLACE:
            assert_close(f"{name} (step {step})", getattr(kernel, name), getattr(oracle, name), rtol=RTOL)


# B, H, Dk, Dv, K, gate, decay scale
CASES = [
    (2, 3, 48, 96, 4, True, 1.0),  # 0.6B head dims
    (2, 2, 96, 192, 4, True, 1.0),  # 1.3B head dims
    (1, 2, 96, 192, 4, False, 0.01),  # ungated norm, weak decay
    (3, 2, 20, 36, 3, True, 1.0),  # odd dims, conv 3
    (2, 1, 16, 32, 2, True, 1.0),
    (1, 2, 8, 24, 1, True, 1.0),  # no history: conv of the current token only
]


@pytest.mark.parametrize(
    "B, H, Dk, Dv, K, gate, decay",
    CASES,
    ids=[f"B{b}-H{h}-Dk{dk}-Dv{dv}-K{k}-{'gate' if g else 'nogate'}-decay{d}" for b, h, dk, dv, k, g, d in CASES],
)
def test_fused_step_matches_oracle(interpreted, B, H, Dk, Dv, K, gate, decay):
    interpreted(check_steps, B, H, Dk, Dv, K, gate, decay, steps=3)


@pytest.mark.parametrize("gate", [True, False], ids=["gate", "nogate"])
def test_fused_step_reads_strided_projections(interpreted, gate):
    interpreted(check_steps, 3, 2, 20, 36, 3, gate, 1.0, steps=2, fused_inputs=True)


def test_fused_step_neg_eigval(interpreted):
    """allow_neg_eigval (beta = 2 sigmoid(b)) in the kernel and the oracle; the oracle's beta is checked in
    tests/mixers/test_delta_rule.py against the mixer's."""
    interpreted(check_steps, 1, 2, 16, 32, 4, True, 0.01, steps=2, neg_eigval=True)


def test_oracle_neg_eigval_is_the_doubled_write():
    """With a zero state and no decay, the state after one step is beta k v^T: twice as large when beta doubles."""
    step = random_gdn_decode_step(1, 2, 8, 16, 1, decay=0.0, generator=torch.Generator().manual_seed(3))
    step.state.zero_()
    plain, doubled = step.clone_in_place(), dataclasses.replace(step.clone_in_place(), allow_neg_eigval=True)
    naive_gdn_decode_step(plain)
    naive_gdn_decode_step(doubled)
    assert_close("state", doubled.state, 2 * plain.state, rtol=1e-6)


def check_padded_row_stays_zero():
    """Worker side: a row with zero inputs, caches and state (left padding) keeps all of them exactly zero."""
    from lt2.kernels.gdn_decode import fused_gdn_decode_step

    inputs = random_gdn_decode_step(2, 2, 16, 32, 4, generator=torch.Generator().manual_seed(7))
    for name in (*GDNDecodeStep.TOKEN, *GDNDecodeStep.IN_PLACE):
        getattr(inputs, name)[1] = 0.0  # row 1: pad tokens reach the mixer as zeros
    for _ in range(2):
        y = fused_gdn_decode_step(inputs)
        for name, x in (("y", y), *((n, getattr(inputs, n)) for n in GDNDecodeStep.IN_PLACE)):
            assert torch.equal(x[1], torch.zeros_like(x[1])), f"{name} of the padded row is not exactly zero"
        assert y[0].abs().sum() > 0


def test_padded_row_stays_zero(interpreted):
    interpreted(check_padded_row_stays_zero)


def test_conv_step_matches_short_conv():
    """The oracle's one-token convolution (and cache shift) equals the mixer's ShortConv with a cache."""
    gen = torch.Generator().manual_seed(0)
    conv = ShortConv(12, 4)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(12, 4, generator=gen))
    x, cache = torch.randn(3, 12, generator=gen), torch.randn(3, 3, 12, generator=gen)
    cache_oracle = cache.clone()
    with torch.no_grad():
        expected = conv(x[:, None], cache=cache)[:, 0]
    assert_close("conv", conv_step(x, cache_oracle, conv.weight.detach()), expected, rtol=1e-6)
    assert torch.equal(cache_oracle, cache)


@pytest.mark.skipif(importlib.util.find_spec("lt2.mixers.gdn") is None, reason="lt2.mixers.gdn is not importable")
@pytest.mark.parametrize("fuse", [False, True], ids=["separate", "fused-projections"])
def test_oracle_matches_gdn_mixer_decode(fuse):
    """The oracle, fed the step the GatedDeltaNet mixer builds for its fused path, reproduces its decode step,
    also when the mixer's input projections are fused (the step then holds slices of one output)."""
    from lt2.config import LinearArgs, ModelArgs
    from lt2.mixers import SeqInfo, mixer_class
    from lt2.model.fuse import fuse_projections
    from lt2.model.pattern import MixerSpec

    gen = torch.Generator().manual_seed(1)
    args = ModelArgs(
        vocab_size=97,
        dim=32,
        n_layers=1,
        loop_count=1,
        pattern="gdn",
        n_heads=2,
        ffn_dim=64,
        linear=LinearArgs(n_heads=2, head_dim=8, expand_v=2.0, conv_size=4, use_gate=True),
    )
    mixer = mixer_class("gdn")(args, layer_idx=0).double().eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        mixer.A_log.copy_(torch.rand(mixer.A_log.shape, generator=gen, dtype=torch.float64).mul(16).log())
    if fuse:
        assert fuse_projections(mixer) == 1
    B, spec = 3, MixerSpec("gdn")
    cache = mixer.init_cache(B, 16, "cpu", torch.float64, spec)
    for x in (cache.state, cache.conv_q, cache.conv_k, cache.conv_v):
        x.copy_(torch.randn(x.shape, generator=gen, dtype=x.dtype))
    oracle = {name: getattr(cache, name).clone() for name in GDNDecodeStep.IN_PLACE}
    key_mask = torch.ones(B, 16, dtype=torch.bool)
    seq = SeqInfo.for_decode(torch.zeros(B, 1, dtype=torch.long), torch.tensor([0]), key_mask)
    for step in range(3):
        x = torch.randn(B, 1, args.dim, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            expected = mixer(x, seq, cache, spec)[:, 0]
            # the mixer's own projections and weights, on the oracle's copies of the caches and state
            y = naive_gdn_decode_step(dataclasses.replace(mixer.decode_step_inputs(x[:, 0], cache), **oracle))
            # the mixer keeps an fp32 state even for an fp64 model
            assert_close(f"output (step {step})", mixer.o_proj(y), expected, rtol=1e-6)
        assert_close(f"state (step {step})", oracle["state"], cache.state, rtol=1e-6)
        for name in ("conv_q", "conv_k", "conv_v"):
            assert torch.equal(oracle[name], getattr(cache, name)), f"{name} differs after step {step}"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton (pip install lt2[triton])")
def test_argument_checks_name_the_bad_argument():
    """Checks run before any launch, so this needs triton importable but not the interpreter."""
    from lt2.kernels.gdn_decode import fused_gdn_decode_step

    good = random_gdn_decode_step(2, 2, 8, 16, 4, generator=torch.Generator().manual_seed(0))
    bad = [
        (dict(state=good.state.double()), r"state must be \[B, H, Dk, Dv\] fp32"),
        (dict(state=torch.zeros(2, 2, 300, 16)), r"Dk=300 > 256"),
        (dict(q_in=good.q_in[:, :8]), r"q_in must have shape \[2, 16\] for B=2, H=2, Dk=8, Dv=16, K=4"),
        (dict(conv_v=good.conv_v[:, :2]), r"conv_v must have shape \[2, 3, 32\]"),
        (dict(w_k=good.w_k[:, :3]), r"w_k must have shape \[16, 4\]"),
        (dict(a=good.a[:, :1]), r"a must have shape \[2, 2\]"),
        (dict(gate=good.gate[:1]), r"gate must have shape \[2, 32\]"),
        (dict(o_norm_weight=torch.ones(8)), r"o_norm_weight must have shape \[16\]"),
        (dict(v_in=good.v_in.double()), r"q_in, k_in and v_in must share one dtype"),
        (dict(conv_q=good.conv_q.transpose(1, 2).contiguous().transpose(1, 2)), r"conv_q is updated in place"),
        (dict(a=good.a.long()), r"a must be a floating-point tensor"),
        (dict(eps=0.0), r"eps must be > 0"),
        (dict(q_in=good.q_in.clone().requires_grad_()), r"no backward"),
    ]
    for override, message in bad:
        with pytest.raises(ValueError, match=message):
            fused_gdn_decode_step(dataclasses.replace(good, **override))
