"""Gated-linear-attention kernels: the chunked PyTorch form against the per-token oracle.

Checks, for per-head gates (Mamba2), per-key-channel gates (HGRN2) and constant gates (RetNet): outputs,
final states and gradients of `chunk_gla` equal `naive_recurrent_gla` (fp64 ~1e-12, fp32 ~1e-5) at lengths
around the 64-token chunk; packed segments equal each segment alone; very strong per-channel decay stays
finite; bad shapes raise ValueError naming them; and, where fla is importable, fla's own naive references
agree with ours (a second oracle; they are plain PyTorch, so that part runs on CPU).

Run: pytest tests/kernels/test_gla_kernels.py
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lt2.kernels.gla import chunk_gla, fla_chunk_gla, fla_fused_recurrent_gla, naive_recurrent_gla
from lt2.testing import assert_close

GATES = ["head", "channel", "constant"]
LENGTHS = [1, 63, 64, 65, 127, 128, 129, 500]
B, H, K, V = 2, 2, 8, 16
TOL = {torch.float64: dict(rtol=1e-11, atol=1e-11), torch.float32: dict(rtol=2e-5, atol=2e-5)}


def make_gate(kind: str, batch: int, T: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Log decays as the mixers produce them: per head (A*dt-like), per key channel (logsigmoid), constant."""
    if kind == "head":
        return -torch.rand(batch, T, H, generator=gen, dtype=dtype) * 0.5
    if kind == "channel":
        return F.logsigmoid(2 * torch.randn(batch, T, H, K, generator=gen, dtype=dtype))
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(H, dtype=dtype)))


def make_inputs(kind: str, T: int, dtype: torch.dtype, seed: int = 0, batch: int = B):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, T, H, K, generator=gen, dtype=dtype) for _ in range(2))
    v = torch.randn(batch, T, H, V, generator=gen, dtype=dtype)
    g = make_gate(kind, batch, T, dtype, gen)
    h0 = torch.randn(batch, H, K, V, generator=gen, dtype=dtype)
    return q, k, v, g, h0


def run_with_grads(fn, q, k, v, g, h0, upstream=None, **kwargs):
    """Outputs, final state and the gradients w.r.t. every input of <o, do> + <S, dS> (random do, dS by default)."""
    leaves = [x.clone().requires_grad_(x.ndim > 1) for x in (q, k, v, g, h0)]  # constant gates get none
    o, S = fn(*leaves[:4], initial_state=leaves[4], output_final_state=True, **kwargs)
    if upstream is None:
        gen = torch.Generator().manual_seed(123)
        upstream = (
            torch.randn(o.shape, generator=gen, dtype=o.dtype),
            torch.randn(S.shape, generator=gen, dtype=S.dtype),
        )
    ((o * upstream[0]).sum() + (S * upstream[1]).sum()).backward()
    return o.detach(), S.detach(), [x.grad for x in leaves if x.requires_grad]


def case_id(kind, T, dtype):
    return f"{kind}-B{B}-T{T}-H{H}-K{K}-V{V}-{str(dtype).removeprefix('torch.')}"


CASES = [(kind, T, torch.float64) for kind in GATES for T in LENGTHS]
CASES += [(kind, T, torch.float32) for kind in GATES for T in (65, 129)]


@pytest.mark.parametrize("kind,T,dtype", CASES, ids=[case_id(*c) for c in CASES])
def test_chunk_matches_naive_outputs_states_and_gradients(kind, T, dtype):
    inputs = make_inputs(kind, T, dtype)
    o, S, grads = run_with_grads(chunk_gla, *inputs)
    o_ref, S_ref, grads_ref = run_with_grads(naive_recurrent_gla, *inputs)
    tol = TOL[dtype]
    assert o.dtype == dtype and S.dtype == torch.promote_types(dtype, torch.float32)
    assert_close(f"o {kind} T={T}", o, o_ref, **tol)
    assert_close(f"final state {kind} T={T}", S, S_ref, **tol)
    names = ("dq", "dk", "dv", *(("dg",) if kind != "constant" else ()), "dh0")
    assert len(grads) == len(grads_ref) == len(names)
    for name, grad, grad_ref in zip(names, grads, grads_ref):
        assert_close(f"{name} {kind} T={T}", grad, grad_ref, **tol)


@pytest.mark.parametrize("kind", GATES)
def test_result_does_not_depend_on_chunk_size(kind):
    q, k, v, g, h0 = make_inputs(kind, 200, torch.float64)
    o, S = chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    for size in (16, 32, 128):
        o_c, S_c = chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True, chunk_size=size)
        assert_close(f"o chunk_size={size}", o_c, o, **TOL[torch.float64])
        assert_close(f"state chunk_size={size}", S_c, S, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_strong_per_channel_decay_stays_finite(dtype):
    """Forget gates this strong make exp(-cumulative decay) overflow inside one chunk; sub-chunks avoid it."""
    q, k, v, _, h0 = make_inputs("channel", 192, dtype)
    gen = torch.Generator().manual_seed(5)
    strong = (torch.arange(K) < K // 2).to(dtype) * 15.0  # half the channels forget almost everything each token
    g = -(torch.rand(B, 192, H, K, generator=gen, dtype=dtype) + strong)
    assert g[:, :64].sum(1).min() < -710  # exp(710) overflows even fp64: factoring at the chunk start would fail
    o, S = chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    o_ref, S_ref = naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    assert_close("o strong decay", o, o_ref, **TOL[dtype])
    assert_close("state strong decay", S, S_ref, **TOL[dtype])
    _, _, grads = run_with_grads(chunk_gla, q, k, v, g, h0)
    assert all(torch.isfinite(x).all() for x in grads)


SEGMENTS = [1, 63, 65, 64, 128, 129, 50]  # boundaries fall inside and on chunk edges


@pytest.mark.parametrize("kind", GATES)
def test_packed_segments_equal_each_segment_alone(kind):
    total = sum(SEGMENTS)
    q, k, v, g, _ = make_inputs(kind, total, torch.float64, batch=1)
    h0 = torch.randn(len(SEGMENTS), H, K, V, dtype=torch.float64)
    cu = torch.tensor([0, *itertools.accumulate(SEGMENTS)], dtype=torch.int32)
    do, dS = torch.randn(1, total, H, V, dtype=torch.float64), torch.randn(len(SEGMENTS), H, K, V, dtype=torch.float64)
    o, S, grads = run_with_grads(chunk_gla, q, k, v, g, h0, upstream=(do, dS), cu_seqlens=cu)
    alone_o, alone_S, alone_grads = [], [], []
    for i, (a, b) in enumerate(itertools.pairwise(cu.tolist())):
        seg_g = g if g.ndim == 1 else g[:, a:b]
        segment = (q[:, a:b], k[:, a:b], v[:, a:b], seg_g, h0[i : i + 1])
        seg = run_with_grads(naive_recurrent_gla, *segment, upstream=(do[:, a:b], dS[i : i + 1]))
        alone_o.append(seg[0])
        alone_S.append(seg[1])
        alone_grads.append(seg[2])
    assert_close("o packed", o, torch.cat(alone_o, 1), **TOL[torch.float64])
    assert_close("states packed", S, torch.cat(alone_S, 0), **TOL[torch.float64])
    names = ("dq", "dk", "dv", *(("dg",) if g.ndim > 1 else ()), "dh0")  # a constant gate has no gradient
    for j, name in enumerate(names):
        dim = 0 if name == "dh0" else 1
        assert_close(f"{name} packed", grads[j], torch.cat([gr[j] for gr in alone_grads], dim), **TOL[torch.float64])


@pytest.mark.parametrize("kind", GATES)
def test_two_calls_with_state_equal_one_call(kind):
    """What prefill onto an existing cache relies on: the final state carries the sequence on exactly."""
    q, k, v, g, h0 = make_inputs(kind, 150, torch.float64)
    o, S = chunk_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    for split in (1, 64, 77):
        g1, g2 = (g, g) if g.ndim == 1 else (g[:, :split], g[:, split:])
        o1, S1 = chunk_gla(q[:, :split], k[:, :split], v[:, :split], g1, initial_state=h0, output_final_state=True)
        o2, S2 = chunk_gla(q[:, split:], k[:, split:], v[:, split:], g2, initial_state=S1, output_final_state=True)
        assert_close(f"o split={split}", torch.cat([o1, o2], 1), o, **TOL[torch.float64])
        assert_close(f"state split={split}", S2, S, **TOL[torch.float64])


@pytest.mark.parametrize("fn", [chunk_gla, naive_recurrent_gla], ids=["chunk", "naive"])
def test_zero_values_keep_a_zero_state_exactly(fn):
    """Left padding relies on this: tokens with v = 0 (or k = 0) leave a zero state exactly zero."""
    q, k, v, g, _ = make_inputs("channel", 70, torch.float64)
    _, S = fn(q, k, torch.zeros_like(v), g, output_final_state=True)
    assert torch.equal(S, torch.zeros_like(S))
    _, S = fn(q, torch.zeros_like(k), v, g, output_final_state=True)
    assert torch.equal(S, torch.zeros_like(S))


def test_bad_shapes_raise_value_errors_naming_them():
    q, k, v, g, h0 = make_inputs("head", 10, torch.float32)
    with pytest.raises(ValueError, match=r"k shape \(2, 9, 2, 8\)"):
        chunk_gla(q, k[:, :9], v, g)
    with pytest.raises(ValueError, match=r"v must be \[B, T, H, V\] = \[2, 10, 2, V\]"):
        chunk_gla(q, k, v[:, :, :1], g)
    with pytest.raises(ValueError, match=r"got shape \(2, 10, 3\)"):
        chunk_gla(q, k, v, torch.zeros(2, 10, 3))
    with pytest.raises(ValueError, match=r"\[2, 2, 8, 16\], got \(2, 2, 16, 8\)"):
        naive_recurrent_gla(q, k, v, g, initial_state=h0.transpose(-1, -2))
    with pytest.raises(ValueError, match="B = 2"):
        chunk_gla(q, k, v, g, cu_seqlens=torch.tensor([0, 4, 10]))
    with pytest.raises(ValueError, match="got 24"):
        chunk_gla(q, k, v, torch.zeros(2, 10, 2, 8), chunk_size=24)


@pytest.mark.parametrize("fn", [fla_chunk_gla, fla_fused_recurrent_gla], ids=["chunk", "fused_recurrent"])
def test_fla_glue_refuses_cpu_tensors_with_advice(fn):
    q, k, v, g, _ = make_inputs("head", 4, torch.float32)
    with pytest.raises(ValueError, match=r"CUDA only.*use chunk_gla"):
        fn(q, k, v, g)


# ---------------------------------------------------------------- fla's references as a second oracle


def test_fla_naive_references_agree():
    """fla's naive_* are plain PyTorch: they run on CPU wherever fla (and Triton, which it imports) installs."""
    pytest.importorskip("fla.ops.gla.naive", reason="flash-linear-attention is not installed")
    from fla.ops.gla.naive import naive_recurrent_gla as fla_gla
    from fla.ops.retention.naive import naive_retention
    from fla.ops.simple_gla.naive import naive_recurrent_simple_gla

    tol = TOL[torch.float32]  # fla's naive references compute in fp32 whatever they are given
    q, k, v, g, h0 = make_inputs("channel", 129, torch.float32)
    o, S = naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    o_fla, S_fla = fla_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    assert_close("fla naive_recurrent_gla o", o, o_fla, **tol)
    assert_close("fla naive_recurrent_gla state", S, S_fla, **tol)

    q, k, v, g, h0 = make_inputs("head", 129, torch.float32)
    o, S = naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    o_fla, S_fla = naive_recurrent_simple_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    assert_close("fla naive_recurrent_simple_gla o", o, o_fla, **tol)
    assert_close("fla naive_recurrent_simple_gla state", S, S_fla, **tol)

    q, k, v, g, _ = make_inputs("constant", 129, torch.float32)
    o = chunk_gla(q, k, v, g)[0]
    o_fla = naive_retention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)  # head-first
    assert_close("fla naive_retention o", o, o_fla, **tol)
