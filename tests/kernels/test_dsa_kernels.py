"""The DSA kernels against their oracles, on CPU through Triton's interpreter (fp32, tiny shapes).

- parallel_sparse_attention (forward, log-sum-exp, dq/dk/dv) == naive_sparse_attention, with unused (-1)
  slots anywhere in a row, GQA groups of 1..16, head dims that are not powers of two, decode shapes
  (Tq = 1 over a cache) and prefix views of a cache;
- parallel_selected_probs == naive_selected_probs (the indexer's KL target);
- the indexer: chunked top-k and chunked KL backward are independent of the chunk size, and the backward
  equals autograd of the dense scores;
- the DSA mixer on the Triton path == on the reference path: output, every parameter gradient (the
  injected indexer gradient included), and prefill + decode == forward through the model.

Without CUDA the Triton checks run in a TRITON_INTERPRET=1 worker process (fixture `interpreted`,
tests/kernels/conftest.py); on a GPU machine the same checks run the compiled kernels in this process.

Run: pytest tests/kernels/test_dsa_kernels.py
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from lt2.kernels.dsa import (
    index_scores_backward,
    index_topk,
    naive_index_scores,
    naive_selected_probs,
    naive_sparse_attention,
)
from lt2.kernels.dsa import indexer as indexer_module
from lt2.mixers.base import SeqInfo
from lt2.model.pattern import MixerSpec
from lt2.testing import assert_close, tiny_args, tiny_model

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = dict(rtol=2e-5, atol=1e-5)


@pytest.fixture
def on_triton(request):
    """`on_triton(check, *args)`: run a module-level check on CUDA here, else in the interpreter worker."""
    if DEVICE == "cuda":
        return lambda fn, *args: fn(*args)
    return request.getfixturevalue("interpreted")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_indices(B: int, Tq: int, Tk: int, S: int, gen: torch.Generator) -> torch.Tensor:
    """[B, Tq, S] int32 distinct keys per query, a random number of slots (never all) set to -1, shuffled."""
    idx = torch.stack([torch.randperm(Tk, generator=gen)[:S] for _ in range(B * Tq)]).view(B, Tq, S)
    unused = torch.randint(0, S, (B, Tq, 1), generator=gen)
    idx = torch.where(torch.arange(S) < unused, -1, idx)
    order = torch.stack([torch.randperm(S, generator=gen) for _ in range(B * Tq)]).view(B, Tq, S)
    return idx.gather(-1, order).int()


SHAPES = [  # B, Tq, Tk, HQ, H, D, S
    (1, 1, 1, 1, 1, 16, 1),
    (2, 63, 63, 4, 2, 16, 12),
    (1, 65, 65, 16, 1, 32, 40),
    (2, 7, 129, 2, 2, 24, 33),
    (3, 1, 128, 8, 2, 16, 64),  # a decode step over a cache
    (1, 5, 40, 32, 2, 16, 17),
]


def check_sparse_attention(shape):
    from lt2.kernels.dsa.parallel import parallel_sparse_attention

    B, Tq, Tk, HQ, H, D, S = shape
    gen = torch.Generator().manual_seed(sum(shape))
    q = torch.randn(B, Tq, HQ, D, generator=gen).to(DEVICE).requires_grad_()
    k = torch.randn(B, Tk, H, D, generator=gen).to(DEVICE).requires_grad_()
    v = torch.randn(B, Tk, H, D, generator=gen).to(DEVICE).requires_grad_()
    indices = random_indices(B, Tq, Tk, S, gen).to(DEVICE)
    do = torch.randn(B, Tq, HQ, D, generator=gen).to(DEVICE)

    o, lse = parallel_sparse_attention(q, k, v, indices, return_lse=True)
    o_ref, lse_ref = naive_sparse_attention(q, k, v, indices)
    assert_close("o", o, o_ref, **TOL)
    assert_close("lse", lse, lse_ref, **TOL)
    grads = torch.autograd.grad(o, (q, k, v), do)
    expected = torch.autograd.grad(o_ref, (q, k, v), do)
    for name, a, e in zip("qkv", grads, expected):
        assert_close(f"d{name}", a, e, **TOL)


def check_selected_probs(shape):
    from lt2.kernels.dsa.parallel import parallel_selected_probs, parallel_sparse_attention

    B, Tq, Tk, HQ, H, D, S = shape
    gen = torch.Generator().manual_seed(sum(shape) + 1)
    q = torch.randn(B, Tq, HQ, D, generator=gen).to(DEVICE)
    k = torch.randn(B, Tk, H, D, generator=gen).to(DEVICE)
    indices = random_indices(B, Tq, Tk, S, gen).to(DEVICE)
    _, lse = parallel_sparse_attention(q, k, k, indices, return_lse=True)
    p = parallel_selected_probs(q, k, indices, lse)
    assert_close("p", p, naive_selected_probs(q, k, indices), **TOL)
    assert_close("rows sum to one", p.sum(-1), torch.ones(B, Tq, device=DEVICE), **TOL)


def check_prefix_view_of_a_cache():
    from lt2.kernels.dsa.parallel import parallel_sparse_attention

    gen = torch.Generator().manual_seed(3)
    cache_k, cache_v = torch.randn(2, 50, 2, 16, generator=gen), torch.randn(2, 50, 2, 16, generator=gen)
    q = torch.randn(2, 6, 4, 16, generator=gen)
    indices = random_indices(2, 6, 31, 9, gen)
    k, v = cache_k[:, :31].to(DEVICE), cache_v[:, :31].to(DEVICE)
    got = parallel_sparse_attention(q.to(DEVICE), k, v, indices.to(DEVICE))
    assert_close("prefix view", got, naive_sparse_attention(q, cache_k[:, :31], cache_v[:, :31], indices)[0], **TOL)


SHAPE_ID = "B{}-Tq{}-Tk{}-HQ{}-H{}-D{}-S{}".format


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: SHAPE_ID(*s))
def test_sparse_attention_matches_naive(shape, on_triton):
    on_triton(check_sparse_attention, shape)


@pytest.mark.parametrize("shape", SHAPES[1:], ids=lambda s: SHAPE_ID(*s))
def test_selected_probs_match_naive(shape, on_triton):
    on_triton(check_selected_probs, shape)


def test_prefix_view_of_a_cache(on_triton):
    on_triton(check_prefix_view_of_a_cache)


# --------------------------------------------------------------------------------- indexer
def causal(T: int):
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return lambda rows: mask[None, rows]


@pytest.mark.parametrize("T", [1, 63, 64, 65, 129])
def test_index_topk_is_independent_of_the_query_chunk(T, monkeypatch):
    gen = torch.Generator().manual_seed(T)
    q, k, w = (
        torch.randn(2, T, 3, 8, generator=gen),
        torch.randn(2, T, 8, generator=gen),
        torch.randn(2, T, 3, generator=gen),
    )
    whole = index_topk(q, k, w, 10, causal(T))
    monkeypatch.setattr(indexer_module, "CHUNK_ELEMENTS", 2 * 3 * T * 7)  # 7 query rows per chunk
    chunked = index_topk(q, k, w, 10, causal(T))
    assert torch.equal(whole[0], chunked[0])
    # the same dot products, but BLAS may block a 7-row chunk differently from the whole: last-bit differences
    assert_close("chunked scores", chunked[1], whole[1], rtol=0, atol=1e-6)
    dense = naive_index_scores(q, k, w)
    chosen = whole[0].long()
    expected = dense.gather(-1, chosen.clamp(min=0)).masked_fill(chosen < 0, 0.0)
    assert_close("selected scores", whole[1], expected, rtol=0, atol=0)
    visible = torch.ones(T, T, dtype=torch.bool).tril()
    assert (visible[None].expand(2, T, T).gather(-1, chosen.clamp(min=0)) | (chosen < 0)).all(), "a future key"
    assert ((chosen >= 0).sum(-1) == torch.arange(1, T + 1).clamp(max=min(10, T))).all(), "too few keys"


@pytest.mark.parametrize("T", [1, 40, 65])
def test_index_backward_equals_autograd(T, monkeypatch):
    gen = torch.Generator().manual_seed(T)
    q = torch.randn(2, T, 3, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, T, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, T, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    indices, _ = index_topk(q, k, w, 9, causal(T))
    grad = torch.randn(2, T, indices.shape[-1], generator=gen, dtype=torch.float64).masked_fill(indices < 0, 0)
    chosen = indices.long()
    scores = naive_index_scores(q, k, w).gather(-1, chosen.clamp(min=0))
    expected = torch.autograd.grad((scores * grad).sum(), (q, k, w))
    monkeypatch.setattr(indexer_module, "CHUNK_ELEMENTS", 2 * 3 * T * 5)
    got = index_scores_backward(q, k, w, indices, grad)
    for name, a, e in zip("qkw", got, expected):
        assert_close(f"d{name}", a, e, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- the mixer on Triton
@contextlib.contextmanager
def triton_path():
    """Route the DSA mixer through the Triton kernels whatever the device (CPU: the interpreter)."""
    import lt2.mixers.dsa as dsa_module

    original = dsa_module.backend.use_fast
    dsa_module.backend.use_fast = lambda x, needs="torch": needs == "triton"
    try:
        yield
    finally:
        dsa_module.backend.use_fast = original


DSA = {"n_kv_heads": 2, "index_n_heads": 2, "index_head_dim": 8, "topk": 12}


def check_dsa_mixer_triton_path():
    from lt2.mixers.dsa import DeepSeekSparseAttention
    from lt2.model.init import init_weights

    m = DeepSeekSparseAttention(tiny_args("dsa", 1, dsa=DSA), 0).to(DEVICE).train()
    init_weights(m, 0)
    x = torch.randn(2, 33, 32, device=DEVICE, requires_grad=True)
    seq = SeqInfo.for_training(torch.arange(33, device=DEVICE).expand(2, 33))

    def run():
        y = m(x, seq, None, MixerSpec("dsa"))
        grads = torch.autograd.grad(y.square().sum(), [x, *m.parameters()])
        return y, grads, m.last_index_loss

    y_ref, g_ref, loss_ref = run()
    with triton_path():
        y, g, loss = run()
    assert_close("y", y, y_ref, **TOL)
    assert_close("index loss", loss, loss_ref, **TOL)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    for name, a, e in zip(names, g, g_ref):
        assert_close(f"d{name}", a, e, rtol=1e-4, atol=1e-5)


def check_model_decode_on_triton_path():
    torch.manual_seed(0)
    with triton_path():
        model = tiny_model("dsa", 2, dsa=DSA).float().to(DEVICE)
        tokens = torch.randint(0, 97, (2, 18), device=DEVICE)
        full = model(tokens)
        logits, state = model.prefill(tokens[:, :11], max_len=20)
        steps = [model.step(tokens[:, t], state)[0][:, None] for t in range(11, 18)]
    assert_close("prefill + decode", torch.cat([logits, *steps], 1), full, **TOL)


def test_dsa_mixer_triton_path_equals_reference(on_triton):
    on_triton(check_dsa_mixer_triton_path)


def test_model_decode_on_triton_path_equals_forward(on_triton):
    on_triton(check_model_decode_on_triton_path)
