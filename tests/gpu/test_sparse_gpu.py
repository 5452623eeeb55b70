"""The sparse-attention fast paths against their PyTorch references on a CUDA device, in bf16.

DSA (own Triton kernels, needs triton):
- kernels at realistic sizes (B=2, T=2048, 16 query heads sharing 1 KV head of 128, top-512 keys chosen by
  the indexer): forward, log-sum-exp, dq/dk/dv and the head-averaged probabilities vs the naive oracle;
- the mixer (dim 1024) forward + backward, injected indexer gradient included, Triton vs `backend.reference()`;
- training at T=4096 with top-k 2048 stays memory-sane (peak bytes bounded) and finite;
- prefill + one-token decode == forward through the model, and the decode step captured in a CUDA graph.
NSA (fla 0.6's parallel_nsa, needs fla):
- the mixer (dim 1024, 16 heads / 1 KV head, blocks 64 x 16, window 512) forward + backward, fla vs reference;
- packed documents (cu_seqlens) equal each document alone on fla;
- prefill on fla + decode on the reference (GPU tensors) == forward, and the decode step in a CUDA graph.

References compute in fp32 from the same bf16 inputs; tolerances are relative RMS errors. NSA's block
selection can flip between near-tied blocks when fla (bf16 products) and the reference (fp32) disagree in
the last bits, which the tolerance absorbs.

Run: pytest -m gpu tests/gpu/test_sparse_gpu.py
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lt2.config import ModelArgs, resolve
from lt2.kernels import backend
from lt2.kernels.dsa import index_topk, naive_selected_probs, naive_sparse_attention
from lt2.mixers.base import SeqInfo
from lt2.model.looped import LoopedLM
from lt2.model.pattern import MixerSpec
from lt2.testing import assert_close

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
needs_triton = pytest.mark.skipif(not backend.has_triton(), reason="needs triton")
needs_fla = pytest.mark.skipif(not backend.has_fla(), reason="needs flash-linear-attention (fla)")
FWD_RTOL, BWD_RTOL = 1e-2, 2e-2


def model_args(pattern: str, dim: int = 1024, n_layers: int = 1, loop_count: int = 1, **overrides) -> ModelArgs:
    base = dict(
        vocab_size=512,
        dim=dim,
        n_layers=n_layers,
        loop_count=loop_count,
        pattern=pattern,
        n_heads=16,
        ffn_dim=2 * dim,
        max_seqlen=4096,
        nsa={"n_kv_heads": 1, "block_size": 64, "block_count": 16, "window": 512},
        dsa={"n_kv_heads": 1, "index_n_heads": 16, "index_head_dim": 64, "topk": 512},
    )
    return resolve(ModelArgs, {**base, **overrides})


def mixer_and_input(pattern: str, B: int, T: int, seed: int = 0, **overrides):
    model = LoopedLM(model_args(pattern, **overrides))
    model.init_weights()
    mixer = model.layers[0].mixer.cuda().to(torch.bfloat16).train()
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(B, T, mixer.wq.in_features, generator=gen, device="cuda").to(torch.bfloat16)
    return mixer, x.requires_grad_()


def forward_backward(mixer, x, seq, spec):
    """Output, d(x) and every parameter gradient for a fixed random cotangent."""
    y = mixer(x, seq, None, spec)
    gen = torch.Generator(device="cuda").manual_seed(1)
    dy = torch.randn(y.shape, generator=gen, device="cuda").to(y.dtype)
    grads = torch.autograd.grad(y, [x, *mixer.parameters()], dy)
    return y, dict(zip(["x"] + [n for n, _ in mixer.named_parameters()], grads))


def compare_fast_with_reference(mixer, x, spec, seq):
    y, grads = forward_backward(mixer, x, seq, spec)
    with backend.reference():
        y_ref, grads_ref = forward_backward(mixer, x, seq, spec)
    assert_close("y", y, y_ref, rtol=FWD_RTOL, atol=0)
    for name in grads:
        assert_close(f"d{name}", grads[name], grads_ref[name], rtol=BWD_RTOL, atol=0)


# ----------------------------------------------------------------------------------------- DSA
@needs_triton
@pytest.mark.parametrize("head_dim", [64, 128])
def test_dsa_kernels_match_naive(head_dim):
    from lt2.kernels.dsa.parallel import parallel_selected_probs, parallel_sparse_attention

    B, T, HQ, H, S = 2, 2048, 16, 1, 512
    gen = torch.Generator(device="cuda").manual_seed(head_dim)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda").to(torch.bfloat16)

    q, k, v = randn(B, T, HQ, head_dim), randn(B, T, H, head_dim), randn(B, T, H, head_dim)
    causal = torch.ones(T, T, dtype=torch.bool, device="cuda").tril()
    indices, _ = index_topk(randn(B, T, 4, 32), randn(B, T, 32), randn(B, T, 4), S, lambda rows: causal[None, rows])
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    do = randn(B, T, HQ, head_dim)
    o, lse = parallel_sparse_attention(q, k, v, indices, return_lse=True)
    o_ref, lse_ref = naive_sparse_attention(*(t.float() for t in (q, k, v)), indices)
    assert_close("o", o, o_ref, rtol=FWD_RTOL, atol=0)
    assert_close("lse", lse, lse_ref, rtol=1e-3, atol=0)
    grads = torch.autograd.grad(o, (q, k, v), do)
    expected = torch.autograd.grad(o_ref, (q, k, v), do.float())
    for name, a, e in zip("qkv", grads, expected):
        assert_close(f"d{name}", a, e, rtol=BWD_RTOL, atol=0)
    p = parallel_selected_probs(q.detach(), k.detach(), indices, lse)
    assert_close("probs", p, naive_selected_probs(q.detach().float(), k.detach().float(), indices), rtol=1e-2, atol=0)


@pytest.mark.parametrize("pattern", [pytest.param("dsa", marks=needs_triton), pytest.param("nsa", marks=needs_fla)])
def test_mixer_fast_path_equals_reference(pattern):
    """DSA: our Triton indexer + sparse attention; NSA: fla's kernels; each vs the PyTorch reference."""
    mixer, x = mixer_and_input(pattern, B=2, T=2048)
    seq = SeqInfo.for_training(torch.arange(2048, device="cuda").expand(2, 2048))
    compare_fast_with_reference(mixer, x, MixerSpec(pattern), seq)


@needs_triton
def test_dsa_trains_at_4096_with_topk_2048_memory_sane():
    """One DSA layer, B=2, T=4096, top-2048: forward + backward finite, and peak memory far below the dense
    [B, T, T]-per-head footprint (16 heads x 2 x 4096^2 fp32 = 4 GiB for the attention matrix alone)."""
    mixer, x = mixer_and_input("dsa", B=2, T=4096, dsa={"n_kv_heads": 1, "index_n_heads": 16, "topk": 2048})
    seq = SeqInfo.for_training(torch.arange(4096, device="cuda").expand(2, 4096))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    _, grads = forward_backward(mixer, x, seq, MixerSpec("dsa"))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["wq_index.weight"].abs().max() > 0, "the indexer got no gradient"
    assert peak < 3 * 2**30, f"peak {peak / 2**30:.2f} GiB for one layer"


def small_model(pattern: str, dtype=torch.float32) -> LoopedLM:
    args = model_args(
        pattern,
        dim=256,
        n_layers=2,
        loop_count=2,
        n_heads=16,
        nsa={"n_kv_heads": 1, "block_size": 16, "block_count": 4, "window": 32},
        dsa={"n_kv_heads": 2, "index_n_heads": 4, "index_head_dim": 32, "topk": 48},
    )
    model = LoopedLM(args)
    model.init_weights()
    return model.cuda().to(dtype).eval()


@pytest.fixture
def exact_fp32_matmuls():
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


# fp32 models. DSA's kernels use exact fp32 products, so only the order of sums differs between paths;
# fla's NSA kernels multiply in tf32, and decode runs the fp32 reference, so NSA gets a looser bound.
DECODE_RTOL = {"dsa": 1e-3, "nsa": 1e-2}


@pytest.mark.parametrize("pattern", [pytest.param("dsa", marks=needs_triton), pytest.param("nsa", marks=needs_fla)])
def test_decode_equals_forward_and_graph_replay(pattern, exact_fp32_matmuls):
    from lt2.infer.decoder import Decoder

    model = small_model(pattern)
    gen = torch.Generator(device="cuda").manual_seed(0)
    tokens = torch.randint(0, 512, (2, 200), generator=gen, device="cuda")
    with torch.no_grad():
        full = model(tokens)
    logits, state = model.prefill(tokens[:, :150], max_len=208)
    steps = [model.step(tokens[:, t], state)[0][:, None] for t in range(150, 200)]
    got = torch.cat([logits, *steps], 1)
    assert_close(f"{pattern} prefill + decode", got, full, rtol=DECODE_RTOL[pattern], atol=0)

    eager = Decoder(model, batch=2, max_len=208, cuda_graph=False)
    graph = Decoder(model, batch=2, max_len=208, cuda_graph=True, warmup=1)
    eager.prefill(tokens[:, :150])
    graph.prefill(tokens[:, :150])
    for t in range(150, 160):
        a, _ = eager.step(tokens[:, t])
        b, _ = graph.step(tokens[:, t])
        assert_close(f"{pattern} graph step {t}", b, a, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------- NSA
@needs_fla
def test_nsa_packed_documents_equal_documents_alone():
    model = LoopedLM(model_args("nsa", dim=512, n_layers=1))
    model.init_weights()
    model = model.cuda().to(torch.bfloat16)
    gen = torch.Generator(device="cuda").manual_seed(0)
    tokens = torch.randint(0, 512, (1, 1500), generator=gen, device="cuda")
    doc_start = torch.zeros(1, 1500, dtype=torch.bool, device="cuda")
    bounds = [0, 300, 1100, 1500]
    doc_start[0, bounds[:-1]] = True
    with torch.no_grad():
        packed = model(tokens, doc_start=doc_start)
        for a, b in itertools.pairwise(bounds):
            assert_close(f"doc {a}:{b}", packed[0, a:b], model(tokens[:, a:b])[0], rtol=FWD_RTOL, atol=0)


@needs_fla
def test_nsa_constructor_and_call_reject_unsupported_groups():
    args = model_args("nsa", dim=256, n_heads=8, nsa={"n_kv_heads": 1})
    with pytest.warns(UserWarning, match="power of two >= 16"):
        model = LoopedLM(args)
    model.init_weights()
    model = model.cuda()
    with pytest.raises(ValueError, match="power of two >= 16"):
        model(torch.zeros(1, 8, dtype=torch.long, device="cuda"))
    with backend.reference():
        F.cross_entropy(model(torch.zeros(1, 8, dtype=torch.long, device="cuda"))[0], torch.zeros(8).long().cuda())
