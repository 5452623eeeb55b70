"""The gated-linear-attention mixers (mamba2, hgrn2, retnet) through the model API and on their own.

Checks, in fp64 on CPU for each family and for variants the default tiny model does not cover (Mamba2
with two B/C groups, HGRN2 and RetNet without convolutions, RetNet without output gate): prefill + one-token
decode == forward (loop_count 1/2/4; splits at one token, uneven, onto an existing cache, across the
64-token chunk); left padding keeps every recurrent and conv state exactly zero and rows independent of
each other; packed documents == each document alone; every parameter gets a gradient; caches are
allocated once and updated in place; initialisation follows Mamba2 / RetNet; bad dims raise ValueError
naming the numbers.

Run: pytest tests/mixers/test_gla_family.py   (-k mamba2 for one family)
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lt2.mixers.base import SeqInfo
from lt2.mixers.mamba2 import Mamba2
from lt2.mixers.norms import GatedRMSNorm
from lt2.mixers.retnet import retention_log_decay
from lt2.model.pattern import MixerSpec
from lt2.testing import (
    assert_close,
    incremental_logits,
    packed_and_alone,
    padded_rows_and_alone,
    tiny_args,
    tiny_model,
)

LINEAR = {"n_heads": 2, "head_dim": 8, "expand_v": 2.0}
MAMBA2 = {"head_dim": 8, "d_state": 8, "expand": 2}
VARIANTS = {
    "mamba2": ("mamba2", {}),
    "mamba2-groups2-conv2": ("mamba2", {"mamba2": {**MAMBA2, "n_groups": 2, "conv_size": 2}}),
    "hgrn2": ("hgrn2", {}),
    "hgrn2-noconv-heads4": ("hgrn2", {"linear": {**LINEAR, "n_heads": 4, "conv_size": 0}}),
    "retnet": ("retnet", {}),
    "retnet-nogate-noconv-v1.5": ("retnet", {"linear": {**LINEAR, "expand_v": 1.5, "use_gate": False, "conv_size": 0}}),
}
FAMILIES = ["mamba2", "hgrn2", "retnet"]
TOL = dict(rtol=1e-9, atol=1e-9)


def model_for(variant: str, loop_count: int = 2):
    pattern, overrides = VARIANTS[variant]
    return tiny_model(pattern, loop_count, **overrides)


# ------------------------------------------------------------------ decode == forward through the model


# tests/model/test_decode.py runs the default config of every family; these are the other variants.
OTHER_VARIANTS = [variant for variant in VARIANTS if variant not in FAMILIES]
DECODE_CASES = [(variant, loops) for variant in OTHER_VARIANTS for loops in (1, 2, 4)]


@pytest.mark.parametrize("variant,loop_count", DECODE_CASES, ids=[f"{v}-loops{n}" for v, n in DECODE_CASES])
def test_prefill_then_decode_equals_forward(variant, loop_count):
    model = model_for(variant, loop_count)
    tokens = torch.randint(0, 97, (2, 32))
    full = model(tokens)
    for splits in ([1], [13], [5, 19], [31]):  # one token, uneven, prefill onto an existing cache, all but one
        assert_close(f"{variant} splits={splits}", incremental_logits(model, tokens, splits), full, **TOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fp32_model_decode_equals_forward(variant):
    """The production dtypes keep an fp32 state; decode must still follow the forward closely."""
    model = model_for(variant).float()
    tokens = torch.randint(0, 97, (2, 70))
    assert_close(variant, incremental_logits(model, tokens, [66]), model(tokens), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- padding and batch rows


@pytest.mark.parametrize("variant", OTHER_VARIANTS)
def test_rows_independent_of_batch_lengths_and_left_padding(variant):
    model = model_for(variant)
    for name, batched, alone in padded_rows_and_alone(model, [70, 11, 1], steps=5):
        assert_close(f"{variant} {name}", batched, alone, **TOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pad_tokens_leave_every_state_exactly_zero(variant):
    """The block zeroes the mixer input at pads; with no bias on the input path nothing reaches the state."""
    model = model_for(variant)
    mixer = model.layers[0].mixer
    x = torch.randn(2, 9, model.args.dim, dtype=torch.float64)
    x[0] = 0.0  # row 0: nine pad tokens, as the block passes them
    cache = mixer.init_cache(2, 16, x.device, x.dtype, MixerSpec(variant.split("-")[0]))
    seq = SeqInfo.for_prefill(torch.zeros(2, 9, dtype=torch.long), 0, torch.ones(2, 16, dtype=torch.bool))
    mixer(x, seq, cache, MixerSpec(variant.split("-")[0]))
    for tensor in (cache.state, *cache.convs):
        assert torch.equal(tensor[0], torch.zeros_like(tensor[0]))
        assert tensor[1].abs().sum() > 0  # the real row did write: the check above is not vacuous


# ------------------------------------------------------------------------------- packed documents


@pytest.mark.parametrize("variant", OTHER_VARIANTS)
def test_packed_documents_equal_documents_alone(variant):
    model = model_for(variant)
    tokens = torch.randint(0, 97, (2, 140))
    # a one-token doc; edges on and off chunk boundaries
    for name, packed, alone in packed_and_alone(model, tokens, {0: [0, 1, 65, 130], 1: [0, 64]}):
        assert_close(f"{variant} {name}", packed, alone, **TOL)


# ------------------------------------------------------------------------------ training and cache


@pytest.mark.parametrize("variant", OTHER_VARIANTS)
def test_gradients_reach_every_parameter(variant):
    model = model_for(variant).train()
    tokens = torch.randint(0, 97, (2, 70))
    logits = model(tokens[:, :-1])
    F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"no gradient reaches: {dead}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
def test_cache_is_allocated_once_and_updated_in_place(family, dtype):
    model = model_for(family).to(dtype)
    _, state = model.prefill(torch.randint(0, 97, (2, 5)), max_len=16)
    cache = state.caches[1][0]
    assert cache.state.dtype == torch.promote_types(dtype, torch.float32)  # fp32 states, fp64 in fp64 models
    mixer = model.layers[0].mixer
    assert cache.state.shape == (2, mixer.n_heads, mixer.head_k_dim, mixer.head_v_dim)
    assert all(c.dtype == dtype for c in cache.convs)
    pointers = [t.data_ptr() for t in (cache.state, *cache.convs)]
    before = [t.clone() for t in (cache.state, *cache.convs)]
    model.prefill(torch.randint(0, 97, (2, 3)), state)
    model.step(torch.randint(0, 97, (2,)), state)
    assert [t.data_ptr() for t in (cache.state, *cache.convs)] == pointers
    assert all(not torch.equal(a, b) for a, b in zip((cache.state, *cache.convs), before))


@pytest.mark.parametrize("family", FAMILIES)
def test_mixing_flops_do_not_grow_with_context(family):
    mixer = model_for(family).layers[0].mixer
    spec = MixerSpec(family)
    assert mixer.mixing_flops(128, spec) == mixer.mixing_flops(32768, spec) > 0


# ------------------------------------------- each mixer equals its equations, written out independently


def causal_conv(x: torch.Tensor, weight: torch.Tensor, activation: bool) -> torch.Tensor:
    """x [B, T, C], weight [C, size] (last tap = current token) -> depthwise causal conv via F.conv1d."""
    size = weight.shape[1]
    y = F.conv1d(x.transpose(1, 2), weight[:, None, :], padding=size - 1, groups=x.shape[2])[..., : x.shape[1]]
    y = y.transpose(1, 2)
    return F.silu(y) if activation else y


def rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def mamba2_reference(m, x: torch.Tensor) -> torch.Tensor:
    """Mamba2 as mamba_ssm's selective_state_update loop: h [B, H, P, N], h = e^(dt A) h + dt x B^T, y = h C + D x."""
    B, T, _ = x.shape
    H, P, N, G = m.n_heads, m.head_v_dim, m.head_k_dim, m.n_groups
    z, xbc, dt = (x @ m.in_proj.weight.T).split([m.d_inner, m.conv_dim, H], -1)
    xs, b, c = causal_conv(xbc, m.conv1d.weight, True).split([m.d_inner, G * N, G * N], -1)
    xs, b, c = xs.view(B, T, H, P), b.view(B, T, G, N), c.view(B, T, G, N)
    dt = F.softplus(dt + m.dt_bias)
    A = -m.A_log.exp()
    group = torch.arange(H) // (H // G)  # head -> B/C group
    h = x.new_zeros(B, H, P, N)
    ys = []
    for t in range(T):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        h = h * decay + (dt[:, t, :, None, None] * xs[:, t, :, :, None]) * b[:, t, group][:, :, None, :]
        ys.append((h * c[:, t, group][:, :, None, :]).sum(-1) + m.D[:, None] * xs[:, t])
    y = torch.stack(ys, 1).reshape(B, T, m.d_inner) * F.silu(z)
    y = rms(y.view(B, T, G, -1), m.norm.eps).reshape(B, T, m.d_inner) * m.norm.weight
    return y @ m.out_proj.weight.T


def hgrn2_reference(m, x: torch.Tensor) -> torch.Tensor:
    """HGRN2 as its paper's recurrence: S = f S + (1 - f) i^T per head, o = S^T q / sqrt(Dk), one RMSNorm over C."""
    B, T, C = x.shape
    H, Dk, Dv = m.n_heads, m.head_k_dim, m.head_v_dim
    q, f, i = x @ m.q_proj.weight.T, x @ m.f_proj.weight.T, x @ m.i_proj.weight.T
    if m.q_conv1d is not None:
        q, f, i = (
            causal_conv(t, conv.weight, False) for t, conv in zip((q, f, i), (m.q_conv1d, m.f_conv1d, m.i_conv1d))
        )
    q, forget, i = F.silu(q).view(B, T, H, Dk), torch.sigmoid(f).view(B, T, H, Dk), i.view(B, T, H, Dv)
    S = x.new_zeros(B, H, Dk, Dv)
    outs = []
    for t in range(T):
        S = forget[:, t, :, :, None] * S + (1 - forget[:, t, :, :, None]) * i[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * Dk**-0.5, S))
    o = torch.stack(outs, 1).reshape(B, T, C)
    return (rms(o, m.g_norm.eps) * m.g_norm.weight) @ m.o_proj.weight.T


def retnet_reference(m, x: torch.Tensor) -> torch.Tensor:
    """RetNet's parallel form: O = (Q K^T / sqrt(Dk) * D) V with D_ts = gamma^(t-s) for s <= t (no recurrence)."""
    B, T, _ = x.shape
    H, Dk, Dv = m.n_heads, m.head_k_dim, m.head_v_dim
    q, k, v = x @ m.q_proj.weight.T, x @ m.k_proj.weight.T, x @ m.v_proj.weight.T
    if m.q_conv1d is not None:
        q, k, v = (
            causal_conv(t, conv.weight, True) for t, conv in zip((q, k, v), (m.q_conv1d, m.k_conv1d, m.v_conv1d))
        )
    q, k, v = q.view(B, T, H, Dk), k.view(B, T, H, Dk), v.view(B, T, H, Dv)
    angle = torch.arange(T, dtype=x.dtype)[:, None] * m.rope_theta ** (-torch.arange(0, Dk, 2, dtype=x.dtype) / Dk)
    cos, sin = angle.cos()[None, :, None], angle.sin()[None, :, None]  # [1, T, 1, Dk/2]

    def rotate(t):
        t1, t2 = t[..., : Dk // 2], t[..., Dk // 2 :]
        return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], -1)

    q, k = rotate(q), rotate(k)
    gamma = 1 - 2.0 ** (-5.0 - torch.arange(H, dtype=x.dtype))
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    decay = torch.where(distance >= 0, gamma[:, None, None] ** distance.clamp(min=0), 0.0)  # [H, T, T]
    scores = torch.einsum("bthd,bshd->bhts", q, k) * Dk**-0.5 * decay
    o = torch.einsum("bhts,bshd->bthd", scores, v)
    o = rms(o, m.g_norm.eps) * m.g_norm.weight
    if m.g_proj is not None:
        o = o * F.silu(x @ m.g_proj.weight.T).view(B, T, H, Dv)
    return o.reshape(B, T, -1) @ m.o_proj.weight.T


REFERENCES = {"mamba2": mamba2_reference, "hgrn2": hgrn2_reference, "retnet": retnet_reference}
# lt2.model.layers' RMSNorm (HGRN2) and apply_rope (RetNet) compute in fp32 even for fp64 inputs, so these
# comparisons with fp64 transcriptions hold to ~1e-7; a wrong formula is off by O(1).
EQUATION_TOL = dict(rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("T", [1, 130])
@pytest.mark.parametrize("variant", VARIANTS)
def test_mixer_equals_its_equations(variant, T):
    """Forward (chunked) and decode (recurrent) both equal an independent transcription of the layer."""
    family = VARIANTS[variant][0]
    model = model_for(variant)
    mixer = model.layers[0].mixer
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # move every parameter off its init, so that each one matters (norm weights, D, ...)
        for p in mixer.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(2, T, model.args.dim, dtype=torch.float64)
    expected = REFERENCES[family](mixer, x)
    positions = torch.arange(T).expand(2, T)
    spec = MixerSpec(family)
    assert_close(f"{variant} forward", mixer(x, SeqInfo.for_training(positions), None, spec), expected, **EQUATION_TOL)
    cache = mixer.init_cache(2, T, x.device, x.dtype, spec)
    key_mask = torch.ones(2, T, dtype=torch.bool)
    steps = [
        mixer(x[:, t : t + 1], SeqInfo.for_decode(positions[:, t : t + 1], torch.tensor([t]), key_mask), cache, spec)
        for t in range(T)
    ]
    assert_close(f"{variant} decode", torch.cat(steps, 1), expected, **EQUATION_TOL)


# ------------------------------------------------------------------------------- parameterisation


def test_mamba2_initialisation_follows_mamba2():
    args = tiny_args("mamba2", mamba2={**MAMBA2, "head_dim": 4, "dt_min": 0.01, "dt_max": 0.05})
    mixer = Mamba2(args, 0)
    torch.manual_seed(0)
    mixer.reset_parameters()
    A = mixer.A_log.exp()
    dt = F.softplus(mixer.dt_bias)
    assert mixer.n_heads == 16 and ((A >= 1) & (A <= 16)).all()
    assert ((dt >= 0.01 - 1e-6) & (dt <= 0.05 + 1e-6)).all() and dt.std() > 0
    assert torch.equal(mixer.D, torch.ones(16))
    assert all(getattr(p, "_no_weight_decay", False) for p in (mixer.A_log, mixer.dt_bias, mixer.D))


def test_retnet_decays_are_one_minus_two_to_the_minus_five_minus_h():
    gamma = retention_log_decay(4, dtype=torch.float64).exp()
    expected = torch.tensor([1 - 2.0**-5, 1 - 2.0**-6, 1 - 2.0**-7, 1 - 2.0**-8], dtype=torch.float64)
    assert_close("gamma", gamma, expected, rtol=1e-15, atol=1e-15)


def test_gated_rms_norm_matches_its_formula():
    x, z = torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 12, dtype=torch.float64)
    norm = GatedRMSNorm(12, eps=1e-5, group_size=4, norm_before_gate=False)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 12))
    y = x * F.silu(z)
    groups = y.view(3, 3, 4)
    expected = (groups / (groups.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()).view(3, 12) * norm.weight
    assert_close("norm(x * silu(z))", norm(x, z), expected, rtol=1e-12, atol=1e-12)
    norm.norm_before_gate = True
    groups = x.view(3, 3, 4)
    expected = (groups / (groups.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()).view(3, 12) * norm.weight * F.silu(z)
    assert_close("norm(x) * silu(z)", norm(x, z), expected, rtol=1e-12, atol=1e-12)


def test_hgrn2_key_is_one_minus_the_forget_gate():
    """k = 1 - sigmoid(f) written into the state: with f = +inf nothing is written, with f = -inf all is."""
    model = model_for("hgrn2-noconv-heads4")
    mixer = model.layers[0].mixer
    x = torch.randn(1, 1, model.args.dim, dtype=torch.float64)
    seq = SeqInfo.for_prefill(torch.zeros(1, 1, dtype=torch.long), 0, torch.ones(1, 4, dtype=torch.bool))
    with torch.no_grad():
        mixer.f_proj.weight.zero_()
    cache = mixer.init_cache(1, 4, x.device, x.dtype, MixerSpec("hgrn2"))
    mixer(x, seq, cache, MixerSpec("hgrn2"))
    q_dim, v = mixer.head_k_dim, mixer.i_proj(x).view(mixer.n_heads, mixer.head_v_dim)
    expected = torch.full((mixer.n_heads, q_dim, 1), 0.5, dtype=torch.float64) * v[:, None, :]  # f = 0: k = 1/2
    assert_close("state after one token", cache.state[0], expected, rtol=1e-12, atol=1e-12)
    assert math.isclose(float(-torch.expm1(F.logsigmoid(torch.tensor(0.0)))), 0.5)


@pytest.mark.parametrize(
    "pattern,overrides,message",
    [
        ("hgrn2", {"dim": 30, "n_heads": 3, "n_kv_heads": 1}, "model dim 30 does not divide into linear.n_heads 4"),
        ("mamba2", {"mamba2": {**MAMBA2, "n_groups": 3}}, "mamba2 heads 8 .* do not divide into n_groups 3"),
        ("mamba2", {"mamba2": {**MAMBA2, "dt_min": 0.5, "dt_max": 0.1}}, "dt_min=0.5, dt_max=0.1"),
        ("mamba2", {"mamba2": {**MAMBA2, "conv_size": 0}}, "d_state and conv_size must be >= 1, got 8 and 0"),
        ("retnet", {"linear": {**LINEAR, "head_dim": 7}}, "head_dim must be even .* got 7"),
        ("retnet", {"linear": {**LINEAR, "expand_v": 0.3}}, "expand_v = 0.3 times head_dim = 8 gives value head dim"),
        ("retnet", {"linear": {**LINEAR, "conv_size": -1}}, "conv_size must be >= 0"),
    ],
    ids=["hgrn2-heads", "mamba2-groups", "mamba2-dt", "mamba2-conv", "retnet-rope", "retnet-expand_v", "retnet-conv"],
)
def test_bad_dimensions_raise_value_errors_with_the_numbers(pattern, overrides, message):
    if pattern == "hgrn2":
        overrides = {**overrides, "linear": {**LINEAR, "n_heads": 4}}
    with pytest.raises(ValueError, match=message):
        tiny_model(pattern, 1, **overrides)
