"""The sparse-attention mixers (NSA, DSA) on CPU, in fp64.

- the reference paths equal an independent per-query oracle (python loops over queries: explicit blocks or
  indexer scores, a sorted() ranking, softmax per head) at odd lengths around the block sizes;
- through the model API, GQA variants (2 KV heads; tests/model/test_decode.py runs the default configs):
  prefill + one-token decode == forward, left-padded rows equal each row alone, packed documents equal
  each document alone;
- training: every parameter gets a gradient (the DSA indexer through its injected KL gradient, which must
  equal autograd of the explicit KL), and a few SGD steps on the indexer alone reduce its KL;
- the shared top-k tie rule and the configuration checks.

Configurations keep sparsity real: DSA top-k < T, NSA block_count > the three forced blocks.
The hybrid is `interleave:1:1:gdn:dsa`, LT2-hybrid (GDN+DSA) at tiny depth.

Run: pytest tests/mixers/test_sparse.py
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lt2.kernels.dsa import index_kl, naive_index_scores, naive_selected_probs
from lt2.kernels.nsa import fla_nsa_unsupported
from lt2.kernels.topk import select_topk
from lt2.mixers.base import SeqInfo
from lt2.mixers.dsa import DeepSeekSparseAttention
from lt2.mixers.nsa import NativeSparseAttention
from lt2.model.init import init_weights
from lt2.model.layers import apply_rope
from lt2.model.pattern import MixerSpec
from lt2.testing import assert_close, incremental_logits, packed_and_alone, padded_rows_and_alone, tiny_model

NSA = {"n_kv_heads": 2, "block_size": 8, "block_count": 4, "window": 8}
DSA = {"n_kv_heads": 2, "index_n_heads": 2, "index_head_dim": 8, "topk": 12, "index_loss_coef": 1.0}
SPARSE = dict(nsa=NSA, dsa=DSA)
PATTERNS = ["nsa", "dsa", "interleave:1:1:gdn:dsa"]  # the last: LT2-hybrid (GDN+DSA) at tiny depth
LENGTHS = [1, 63, 64, 65, 127, 128, 129]
TOL = dict(rtol=1e-9, atol=1e-9)


def tol(pattern: str) -> dict:
    """fp64 paths are exact to rounding; GDN keeps its recurrent state in fp32 by design (~1e-7 noise)."""
    return dict(rtol=1e-5, atol=1e-6) if "gdn" in pattern else TOL


def sparse_model(pattern: str, loop_count: int = 2, **overrides):
    return tiny_model(pattern, loop_count, **{**SPARSE, **overrides})


def mixer(cls, seed: int = 0):
    from lt2.testing import tiny_args

    m = cls(tiny_args("nsa" if cls is NativeSparseAttention else "dsa", 1, **SPARSE), 0)
    init_weights(m, seed)
    return m.double()


# ----------------------------------------------------------------------------- per-query oracles
def rank(scores: list[float], n: int) -> list[int]:
    """The documented selection rule: highest fp32 score first, ties to the later index."""
    return sorted(range(len(scores)), key=lambda i: (np.float32(scores[i]) + np.float32(0.0), i), reverse=True)[:n]


def heads_attend(q_t: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: list[int], G: int) -> torch.Tensor:
    """q_t [HQ, D] attends to k/v [T, H, D] rows `keys`: [HQ, D] (zero when no key)."""
    out = torch.zeros_like(q_t)
    if not keys:
        return out
    for h in range(q_t.shape[0]):
        kk, vv = k[keys, h // G], v[keys, h // G]
        out[h] = torch.softmax(kk @ q_t[h] / q_t.shape[1] ** 0.5, 0) @ vv
    return out


def rope_qkv(m, x: torch.Tensor, H: int):
    B, T, _ = x.shape
    pos = torch.arange(T).expand(B, T)
    q = apply_rope(m.wq(x).view(B, T, m.n_heads, m.head_dim), pos, m.inv_freq)
    k = apply_rope(m.wk(x).view(B, T, H, m.head_dim), pos, m.inv_freq)
    return q, k, m.wv(x).view(B, T, H, m.head_dim), pos


@torch.no_grad()
def dsa_oracle(m: DeepSeekSparseAttention, x: torch.Tensor) -> torch.Tensor:
    B, T, _ = x.shape
    H, HI, DI, r = m.n_kv_heads, m.index_n_heads, m.index_head_dim, m.index_rope_dim
    q, k, v, pos = rope_qkv(m, x, H)
    qi = m.wq_index(x).view(B, T, HI, DI)
    qi = torch.cat([apply_rope(qi[..., :r], pos, m.index_inv_freq), qi[..., r:]], -1)
    ki = F.layer_norm(m.wk_index(x), (DI,), m.k_index_norm.weight, m.k_index_norm.bias, m.k_index_norm.eps)
    ki = torch.cat([apply_rope(ki[:, :, None, :r], pos, m.index_inv_freq)[:, :, 0], ki[..., r:]], -1)
    w = m.w_index(x) / HI**0.5
    o = torch.zeros_like(q)
    for b, t in itertools.product(range(B), range(T)):
        scores = [
            sum(w[b, t, j] * torch.relu(qi[b, t, j] @ ki[b, s]) for j in range(HI)).item() / DI**0.5
            for s in range(t + 1)
        ]
        o[b, t] = heads_attend(q[b, t], k[b], v[b], rank(scores, m.topk), m.n_heads // H)
    return m.wo(o.reshape(B, T, -1))


@torch.no_grad()
def nsa_oracle(m: NativeSparseAttention, x: torch.Tensor) -> torch.Tensor:
    B, T, _ = x.shape
    H, BS, G = m.n_kv_heads, m.block_size, m.n_heads // m.n_kv_heads
    q, k, v, _ = rope_qkv(m, x, H)
    g_cmp, g_slc, g_swa = torch.sigmoid(m.wgates(x)).view(B, T, m.n_heads, 3).unbind(-1)
    o = torch.zeros_like(q)
    for b, t in itertools.product(range(B), range(T)):
        n_complete, cur = (t + 1) // BS, t // BS
        kc = torch.stack([k[b, c * BS : (c + 1) * BS].mean(0) for c in range(n_complete)]) if n_complete else None
        vc = torch.stack([v[b, c * BS : (c + 1) * BS].mean(0) for c in range(n_complete)]) if n_complete else None
        o_cmp = torch.zeros_like(q[b, t])
        probs = torch.zeros(m.n_heads, max(n_complete, 1), dtype=x.dtype)
        for h in range(m.n_heads):
            if n_complete:
                probs[h] = torch.softmax(kc[:, h // G] @ q[b, t, h] / m.head_dim**0.5, 0)
                o_cmp[h] = probs[h] @ vc[:, h // G]
        o_slc = torch.zeros_like(q[b, t])
        for kvh in range(H):
            importance = [
                float(G) if c in (0, cur - 1, cur) else probs[kvh * G : (kvh + 1) * G, c].sum().item()
                for c in range(cur + 1)
            ]
            keys = [s for c in sorted(rank(importance, m.block_count)) for s in range(c * BS, min((c + 1) * BS, t + 1))]
            heads = slice(kvh * G, (kvh + 1) * G)
            o_slc[heads] = heads_attend(q[b, t, heads], k[b, :, kvh : kvh + 1], v[b, :, kvh : kvh + 1], keys, G)
        o_swa = heads_attend(q[b, t], k[b], v[b], list(range(max(0, t - m.window + 1), t + 1)), G)
        o[b, t] = g_slc[b, t, :, None] * o_slc + g_cmp[b, t, :, None] * o_cmp + g_swa[b, t, :, None] * o_swa
    return m.wo(o.reshape(B, T, -1))


@pytest.mark.parametrize("T", LENGTHS, ids=[f"B2-T{t}" for t in LENGTHS])
@pytest.mark.parametrize("family", ["nsa", "dsa"])
def test_reference_equals_per_query_oracle(family, T):
    cls, oracle = (NativeSparseAttention, nsa_oracle) if family == "nsa" else (DeepSeekSparseAttention, dsa_oracle)
    m = mixer(cls).eval()
    x = torch.randn(2, T, 32, dtype=torch.float64)
    seq = SeqInfo.for_training(torch.arange(T).expand(2, T))
    with torch.no_grad():
        y = m(x, seq, None, MixerSpec(family))
    assert_close(f"{family} T={T}", y, oracle(m, x), **TOL)


# ------------------------------------------------------------------------------- model API
@pytest.mark.parametrize("loop_count", [1, 2])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_gqa_variants_decode_equal_forward(pattern, loop_count):
    """tests/model/test_decode.py covers the default sparse configs; these run GQA (2 KV heads) variants."""
    model = sparse_model(pattern, loop_count)
    tokens = torch.randint(0, 97, (2, 70))
    full = model(tokens)
    for splits in ([1], [13], [5, 21], [65]):  # one token, uneven, onto an existing cache, across blocks
        assert_close(f"{pattern} splits={splits}", incremental_logits(model, tokens, splits), full, **tol(pattern))
    for name, batched, alone in padded_rows_and_alone(model, [29, 9, 20], steps=4):
        assert_close(f"{pattern} {name}", batched, alone, **tol(pattern))
    for name, packed, alone in packed_and_alone(model, tokens[:, :50], {0: [0, 7, 30], 1: [0, 45]}):
        assert_close(f"{pattern} {name}", packed, alone, **tol(pattern))


# -------------------------------------------------------------------------------- training
@pytest.mark.parametrize("pattern", PATTERNS)
def test_gradients_reach_every_parameter(pattern):
    model = sparse_model(pattern, 2).train()
    tokens = torch.randint(0, 97, (2, 40))
    logits = model(tokens[:, :-1])
    F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"no gradient reaches: {dead}"
    if "dsa" in pattern:
        index = [n for n, _ in model.named_parameters() if "index" in n]
        assert any("wq_index" in n for n in index) and any("wk_index" in n for n in index), index
        assert any("w_index" in n for n in index) and any("k_index_norm" in n for n in index), index


def explicit_index_kl(m: DeepSeekSparseAttention, x: torch.Tensor) -> torch.Tensor:
    """L_I as a differentiable function of the indexer parameters: the same selection, scores by autograd."""
    B, T, _ = x.shape
    seq = SeqInfo.for_training(torch.arange(T).expand(B, T))
    with torch.no_grad():
        m(x, seq, None, MixerSpec("dsa"))  # fills last_index_loss and fixes nothing else
    q_i, k_i, w_i = m._indexer(x, seq)
    scores = naive_index_scores(q_i, k_i, w_i)  # [B, T, T], differentiable
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None]
    with torch.no_grad():
        indices = select_topk(scores, causal, m.topk)
        q, k, _, _ = rope_qkv(m, x, m.n_kv_heads)
        target = naive_selected_probs(q, k, indices.int())
    chosen = scores.gather(-1, indices.clamp(min=0)).masked_fill(indices < 0, 0.0)
    return index_kl(chosen, target, indices)[0]


def test_injected_index_gradient_equals_autograd_of_the_kl():
    m = mixer(DeepSeekSparseAttention).train()
    x = torch.randn(2, 37, 32, dtype=torch.float64)
    seq = SeqInfo.for_training(torch.arange(37).expand(2, 37))
    index_params = [m.wq_index.weight, m.wk_index.weight, m.w_index.weight, m.k_index_norm.weight, m.k_index_norm.bias]
    y = m(x, seq, None, MixerSpec("dsa"))
    injected = torch.autograd.grad(y.square().sum(), index_params)
    m.index_loss_coef = 1.0
    kl = explicit_index_kl(m, x)
    expected = torch.autograd.grad(kl, index_params, retain_graph=True)
    for name, a, e in zip(["wq_index", "wk_index", "w_index", "norm.weight", "norm.bias"], injected, expected):
        assert e.abs().max() > 0, name
        assert_close(f"injected d(L_I)/d{name}", a, e, **TOL)
    assert_close("last_index_loss", m.last_index_loss, kl.detach(), **TOL)
    # the main projections never see the indexer loss, and the indexer never sees the LM loss
    m.zero_grad()
    kl.backward()
    assert m.wq.weight.grad is None and m.wo.weight.grad is None


def test_index_loss_coefficient_scales_the_injected_gradient():
    x = torch.randn(1, 20, 32, dtype=torch.float64)
    seq = SeqInfo.for_training(torch.arange(20)[None])
    grads = []
    for coef in (1.0, 3.0):
        m = mixer(DeepSeekSparseAttention).train()
        m.index_loss_coef = coef
        m(x, seq, None, MixerSpec("dsa")).sum().backward()
        grads.append(m.wq_index.weight.grad)
    # apply_rope computes in fp32 even for fp64 inputs, so the two backward passes round differently there
    assert_close("coef 3 / coef 1", grads[1], 3 * grads[0], rtol=1e-6)


def test_index_loss_never_reaches_the_mixer_input():
    x = torch.randn(2, 25, 32, dtype=torch.float64)
    seq = SeqInfo.for_training(torch.arange(25).expand(2, 25))
    dx = []
    for coef in (0.0, 5.0):
        m = mixer(DeepSeekSparseAttention).train()
        m.index_loss_coef = coef
        xg = x.clone().requires_grad_()
        m(xg, seq, None, MixerSpec("dsa")).square().sum().backward()
        assert (m.wq_index.weight.grad.abs().max() > 0) == (coef > 0)
        dx.append(xg.grad)
    assert torch.equal(dx[0], dx[1]), "the indexer objective leaked into the layer input"


def test_indexer_sgd_reduces_its_kl():
    m = mixer(DeepSeekSparseAttention).train()
    x = torch.randn(2, 48, 32, dtype=torch.float64)
    seq = SeqInfo.for_training(torch.arange(48).expand(2, 48))
    index_params = [p for n, p in m.named_parameters() if "index" in n]
    opt = torch.optim.SGD(index_params, lr=0.5)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        m(x, seq, None, MixerSpec("dsa")).sum().backward()  # any loss through y carries the injected gradient
        losses.append(m.last_index_loss.item())
        for n, p in m.named_parameters():
            if "index" not in n:
                p.grad = None  # the indexer alone moves
        opt.step()
    assert losses[-1] < 0.8 * losses[0], losses


def test_no_index_loss_without_grad():
    m = mixer(DeepSeekSparseAttention)
    with torch.no_grad():
        x, seq = torch.randn(1, 9, 32, dtype=torch.float64), SeqInfo.for_training(torch.arange(9)[None])
        m(x, seq, None, MixerSpec("dsa"))
    assert m.last_index_loss is None


# ------------------------------------------------------------------------ selection + config
def test_topk_ties_go_to_the_later_index_and_signed_zeros_tie():
    scores = torch.tensor([[0.0, -0.0, 5.0, 0.0, -1.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, True, False]])
    assert select_topk(scores, valid, 3).sort().values.tolist() == [[1, 2, 3]]
    assert select_topk(scores, valid, 9).sort().values.tolist() == [[-1, 0, 1, 2, 3, 4]]


def test_fla_constraint_messages():
    assert fla_nsa_unsupported(16, 1, 128, 64, 16) is None
    assert "power of two >= 16" in fla_nsa_unsupported(4, 1, 128, 64, 16)
    assert "power of two >= 16" in fla_nsa_unsupported(48, 2, 128, 64, 16)  # 24: a multiple of 8, not a power
    assert "block_size >= 2 * next_power_of_2" in fla_nsa_unsupported(16, 1, 64, 16, 16)


def test_bad_sparse_configs_raise_with_the_values():
    from lt2.testing import tiny_args

    with pytest.raises(ValueError, match="index_head_dim must be a multiple of 4"):
        DeepSeekSparseAttention(tiny_args("dsa", 1, dsa={**DSA, "index_head_dim": 6}), 0)
    with pytest.raises(ValueError, match=r"not a multiple of dsa\.n_kv_heads 3"):
        DeepSeekSparseAttention(tiny_args("dsa", 1, dsa={**DSA, "n_kv_heads": 3}), 0)
    with pytest.raises(ValueError, match=r"not a multiple of nsa\.n_kv_heads 3"):
        NativeSparseAttention(tiny_args("nsa", 1, nsa={**NSA, "n_kv_heads": 3}), 0)
