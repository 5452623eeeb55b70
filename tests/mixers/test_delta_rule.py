"""The delta-rule mixers (gdn, kda, deltanet) inside the looped model, on CPU in fp32 with tiny dims.

tests/model/test_decode.py checks decode == forward, batch rows, padding and packing for every family's
default config; here: the other variants (no conv, no gate, expand_v 1.5) in fp32, left padding that keeps
every (loop, layer) recurrent and conv state exactly zero, gradients through packed documents, fla's
parameter names, shapes and initialisation, the cache and cost hooks, and bad dims.

Run: pytest tests/mixers/test_delta_rule.py
"""

from __future__ import annotations

import math

import pytest
import torch

from lt2.mixers import mixer_class
from lt2.model.looped import LoopedLM
from lt2.model.pattern import MixerSpec
from lt2.testing import assert_close, incremental_logits, tiny_args

PATTERNS = ("gdn", "kda", "deltanet")
VOCAB = 97
# fp32 through up to 8 mixer applications: rounding reaches ~1e-5 relative; a wrong state is O(1).
RTOL, ATOL = 1e-4, 1e-5


def tiny_model(pattern: str, loop_count: int = 2, seed: int = 0, **linear) -> LoopedLM:
    """lt2.testing's tiny dims with the plain block (no residual gate, no gated attention), fp32."""
    linear = {"n_heads": 2, "head_dim": 8, "expand_v": 2.0, **linear}
    plain = dict(n_heads=2, n_kv_heads=2, window=512, vote_k=5, use_residual=False, gated_attn=False)
    model = LoopedLM(tiny_args(pattern, loop_count, init_seed=seed, linear=linear, **plain))
    model.init_weights()
    return model.eval()


def tokens(B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "linear",
    [{"conv_size": 0}, {"use_gate": False}, {"expand_v": 1.5, "conv_size": 2}],
    ids=["noconv", "nogate", "ev1.5"],
)
@pytest.mark.parametrize("pattern", ("gdn", "deltanet"))
def test_variants_decode_equals_forward(pattern, linear):
    model = tiny_model(pattern, 2, **linear)
    toks = tokens(2, 70, seed=3)
    assert_close(f"{pattern}-{linear}", incremental_logits(model, toks, [66]), model(toks), rtol=RTOL, atol=ATOL)


def delta_caches(state):
    return [cache for row in state.caches for cache in row]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_left_padding_keeps_states_zero_and_rows_independent(pattern):
    model = tiny_model(pattern, 2)
    real = [12, 3, 0]  # real tokens of each row in the first, left-padded, chunk (row 2: all pads)
    first, rest, steps = 12, 67, 3
    toks = tokens(3, first + rest + steps, seed=5)
    pad_mask = torch.arange(first)[None, :] >= torch.tensor([first - n for n in real])[:, None]

    logits, state = model.prefill(toks[:, :first], pad_mask=pad_mask, max_len=first + rest + steps)
    for cache in delta_caches(state):  # the all-pad row wrote nothing, anywhere
        for name in ("state", "conv_q", "conv_k", "conv_v"):
            assert torch.count_nonzero(getattr(cache, name)[2]) == 0, f"{name} of an all-pad row is not zero"
    step_logits = [model.prefill(toks[:, first : first + rest], state)[0]]
    for t in range(first + rest, toks.shape[1]):
        step_logits.append(model.step(toks[:, t], state)[0][:, None])
    continued = torch.cat(step_logits, dim=1)

    for row, n in enumerate(real):
        alone_toks = toks[row : row + 1, first - n :]
        with torch.no_grad():
            alone = model(alone_toks)
        if n:
            assert_close(f"{pattern} row {row} padded prefill", logits[row, first - n :], alone[0, :n], RTOL, ATOL)
        assert_close(f"{pattern} row {row} after padding", continued[row], alone[0, n:], rtol=RTOL, atol=ATOL)


def packed_batch(seed: int):
    """Two rows of 150 tokens; documents start at 0, 40, 105 and at 0, 64, 65, 129."""
    toks = tokens(2, 150, seed)
    doc_start = torch.zeros(2, 150, dtype=torch.bool)
    doc_start[0, [0, 40, 105]] = True
    doc_start[1, [0, 64, 65, 129]] = True
    return toks, doc_start


@pytest.mark.parametrize("pattern", PATTERNS)
def test_gradients_reach_every_parameter(pattern):
    model = tiny_model(pattern, 2).train()
    toks, doc_start = packed_batch(seed=17)
    logits = model(toks, doc_start)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), toks[:, 1:].reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# fla 0.6 names and shapes for dim C = 32, H = 2, Dk = 8, Dv = 16 (conv weights: fla [C, 1, size], ours [C, size]).
EXPECTED_PARAMS = {
    "gdn": {
        "q_proj.weight": (16, 32), "k_proj.weight": (16, 32), "v_proj.weight": (32, 32),
        "a_proj.weight": (2, 32), "b_proj.weight": (2, 32), "A_log": (2,), "dt_bias": (2,),
        "q_conv1d.weight": (16, 4), "k_conv1d.weight": (16, 4), "v_conv1d.weight": (32, 4),
        "g_proj.weight": (32, 32), "o_norm.weight": (16,), "o_proj.weight": (32, 32),
    },
    "kda": {
        "q_proj.weight": (16, 32), "k_proj.weight": (16, 32), "v_proj.weight": (32, 32),
        "q_conv1d.weight": (16, 4), "k_conv1d.weight": (16, 4), "v_conv1d.weight": (32, 4),
        "f_proj.0.weight": (16, 32), "f_proj.1.weight": (16, 16), "b_proj.weight": (2, 32),
        "A_log": (2,), "dt_bias": (16,),
        "g_proj.0.weight": (16, 32), "g_proj.1.weight": (32, 16), "g_proj.1.bias": (32,),
        "o_norm.weight": (16,), "o_proj.weight": (32, 32),
    },
    "deltanet": {
        "q_proj.weight": (16, 32), "k_proj.weight": (16, 32), "v_proj.weight": (32, 32), "b_proj.weight": (2, 32),
        "q_conv1d.weight": (16, 4), "k_conv1d.weight": (16, 4), "v_conv1d.weight": (32, 4),
        "g_proj.weight": (32, 32), "o_norm.weight": (16,), "o_proj.weight": (32, 32),
    },
}  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_parameters_follow_fla(pattern):
    mixer = tiny_model(pattern, 1).layers[0].mixer
    shapes = {name: tuple(p.shape) for name, p in mixer.named_parameters()}
    assert shapes == EXPECTED_PARAMS[pattern]
    assert torch.equal(mixer.o_norm.weight, torch.ones(16))
    if pattern == "kda":
        assert torch.count_nonzero(mixer.g_proj[1].bias) == 0
    if (
        pattern != "deltanet"
    ):  # Mamba2-style decay init, as fla: exp(A_log) ~ U(0 or 1, 16), softplus(dt) in [1e-3, 0.1]
        A = mixer.A_log.exp()
        assert A.min() >= (1 if pattern == "kda" else 0) and A.max() <= 16
        dt = torch.nn.functional.softplus(mixer.dt_bias)
        assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cache_and_costs(pattern):
    args = tiny_model(pattern, 1).args
    with torch.device("meta"):
        mixer = mixer_class(pattern)(args, 0)
    cache = mixer.init_cache(3, 100, "meta", torch.bfloat16, MixerSpec(pattern))
    assert cache.state.shape == (3, 2, 8, 16) and cache.state.dtype == torch.float32
    assert (
        cache.conv_q.shape == (3, 3, 16) and cache.conv_v.shape == (3, 3, 32) and cache.conv_k.dtype == torch.bfloat16
    )
    flops = mixer.mixing_flops(100, MixerSpec(pattern))
    assert flops > 0 and flops == mixer.mixing_flops(100_000, MixerSpec(pattern))  # linear: constant per token


@pytest.mark.parametrize(
    "linear, message",
    [
        ({"head_dim": 3, "expand_v": 0.5}, "value head dim 1.5"),
        ({"head_dim": 0}, "n_heads and head_dim must be >= 1, got 2 and 0"),
        ({"n_heads": 0}, "n_heads and head_dim must be >= 1, got 0 and 8"),
        ({"conv_size": -1}, "conv_size must be >= 0"),
    ],
    ids=["expand_v", "head_dim", "n_heads", "conv_size"],
)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_bad_dims_raise(pattern, linear, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(pattern, 1, **linear)


def test_kda_warns_that_use_gate_is_ignored():
    with pytest.warns(UserWarning, match="use_gate = False is ignored by kda"):
        model = tiny_model("kda", 1, use_gate=False)
    assert model.layers[0].mixer.g_proj is not None


@pytest.mark.parametrize("pattern", ("gdn", "kda"))
def test_decay_formula(pattern):
    # g = -exp(A_log) * softplus(W x + dt_bias); with W = 0, A = 2 and dt_bias = log(e - 1): g = -2 everywhere.
    mixer = tiny_model(pattern, 1).layers[0].mixer
    with torch.no_grad():
        for p in (mixer.a_proj.weight,) if pattern == "gdn" else (mixer.f_proj[1].weight,):
            p.zero_()
        mixer.A_log.fill_(math.log(2.0))
        mixer.dt_bias.fill_(math.log(math.e - 1))
    x = torch.randn(2, 5, 32)
    g = mixer.log_decay(x, mixer.projections(x))
    assert g.shape == ((2, 5, 2) if pattern == "gdn" else (2, 5, 2, 8)) and g.dtype == torch.float32
    assert_close(f"{pattern} decay", g, torch.full_like(g, -2.0), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ allow_neg_eigval
def test_neg_eigval_doubles_beta_and_reaches_every_path():
    """linear.allow_neg_eigval: beta = 2 sigmoid(W_b x) in the mixer; the chunked reference equals the per-token
    oracle with such betas (> 1, so I - beta k k^T has a negative eigenvalue), and decode equals forward."""
    from lt2.kernels.delta_rule import chunk_delta_rule, naive_recurrent_delta_rule

    plain, negeig = tiny_model("gdn", 2, seed=1), tiny_model("gdn", 2, seed=1, allow_neg_eigval=True)
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(0))
    mixer, mixer_neg = plain.layers[0].mixer, negeig.layers[0].mixer
    assert_close("beta", mixer_neg.beta(mixer_neg.b_proj(x)), 2 * torch.sigmoid(mixer.b_proj(x)), rtol=1e-6)
    toks = tokens(2, 70, seed=3)
    with torch.no_grad():
        assert (negeig(toks) - plain(toks)).abs().max() > 1e-3, "the switch changed nothing"
    assert_close("neg-eigval decode", incremental_logits(negeig, toks, [33]), negeig(toks), rtol=RTOL, atol=ATOL)

    gen = torch.Generator().manual_seed(4)
    q, k = torch.randn(2, 70, 2, 8, generator=gen), torch.randn(2, 70, 2, 8, generator=gen)
    v, g = torch.randn(2, 70, 2, 16, generator=gen), -torch.rand(2, 70, 2, generator=gen)
    beta = 1 + torch.rand(2, 70, 2, generator=gen)  # (1, 2): eigenvalue 1 - beta < 0 along k
    kw = dict(g=g, use_qk_l2norm=True, output_final_state=True)
    o, state = chunk_delta_rule(q.double(), k.double(), v.double(), beta.double(), **kw)
    o_ref, state_ref = naive_recurrent_delta_rule(q.double(), k.double(), v.double(), beta.double(), **kw)
    assert_close("chunk o, beta in (1, 2)", o, o_ref, rtol=1e-10)
    assert_close("chunk state, beta in (1, 2)", state, state_ref, rtol=1e-10)
