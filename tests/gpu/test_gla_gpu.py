"""Gated-linear-attention fast path on CUDA: fla's kernels against our PyTorch references, in bf16.

Checks at realistic shapes (B=2, T=2048, 8 heads of 128, i.e. dim 1024): fla_chunk_gla's outputs, final
states and gradients against chunk_gla run on the same bf16 inputs (fp32 math) for per-head, per-channel
and constant gates, also with packed segments; fla_fused_recurrent_gla's decode step against the oracle;
each mixer (mamba2, hgrn2, retnet at dim 1024) forward + parameter gradients against its reference path;
and through the model, prefill + decode == forward on fla and a CUDA-graph-replayed decode step == eager.
Tolerances are relative RMS errors (bf16 inputs: ~1e-2).

Run (on a CUDA machine with flash-linear-attention installed): pytest -m gpu tests/gpu/test_gla_gpu.py
Cold, the file takes ~20 minutes on an H100, nearly all of it Triton compiling and autotuning fla's kernels
for each new specialisation (the slowest test ~130 s); warm, under a minute. Give it a generous timeout.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lt2.kernels import backend
from lt2.kernels.gla import chunk_gla, fla_chunk_gla, fla_fused_recurrent_gla, naive_recurrent_gla
from lt2.mixers.base import SeqInfo
from lt2.model.pattern import MixerSpec
from lt2.testing import assert_close, tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not backend.has_fla(), reason="needs flash-linear-attention (fla)"),
]

B, T, H, K, V = 2, 2048, 8, 128, 128
GATES = ["head", "channel", "constant"]
BF16 = dict(rtol=1e-2, atol=0.0)  # relative RMS; atol 0 so that only the relative error decides
GRAD_BF16 = dict(rtol=2e-2, atol=0.0)  # gradients accumulate over T in bf16 inside fla's backward


def make_inputs(kind: str, batch: int = B, length: int = T, n_states: int | None = None, seed: int = 0):
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, device="cuda")).to(torch.bfloat16)

    q, k, v = randn(batch, length, H, K), randn(batch, length, H, K, scale=K**-0.5), randn(batch, length, H, V)
    if kind == "head":  # Mamba2-like A * dt
        g = -0.1 * torch.rand(batch, length, H, generator=gen, device="cuda")
    elif kind == "channel":  # HGRN2-like logsigmoid(f)
        g = F.logsigmoid(torch.randn(batch, length, H, K, generator=gen, device="cuda") + 2)
    else:  # RetNet
        g = torch.log1p(-torch.exp2(-5.0 - torch.arange(H, device="cuda", dtype=torch.float32)))
    h0 = torch.randn(n_states or batch, H, K, V, generator=gen, device="cuda")
    return q, k, v, g, h0


def run_with_grads(fn, q, k, v, g, h0, **kwargs):
    leaves = [x.detach().clone().requires_grad_(x.ndim > 1) for x in (q, k, v, g, h0)]
    o, S = fn(*leaves[:4], initial_state=leaves[4], output_final_state=True, **kwargs)
    gen = torch.Generator(device="cuda").manual_seed(7)
    do = torch.randn(o.shape, generator=gen, device="cuda").to(o.dtype)
    dS = torch.randn(S.shape, generator=gen, device="cuda")
    ((o.float() * do.float()).sum() + (S * dS).sum()).backward()
    return o.detach().float(), S.detach().float(), [x.grad.float() for x in leaves if x.requires_grad]


def compare(name: str, fast, ref) -> None:
    o, S, grads = fast
    o_ref, S_ref, grads_ref = ref
    assert_close(f"{name} o", o, o_ref, **BF16)
    assert_close(f"{name} final state", S, S_ref, **BF16)
    names = ["dq", "dk", "dv", "dg", "dh0"] if len(grads) == 5 else ["dq", "dk", "dv", "dh0"]
    for grad_name, grad, grad_ref in zip(names, grads, grads_ref, strict=True):
        assert_close(f"{name} {grad_name}", grad, grad_ref, **GRAD_BF16)


@pytest.mark.parametrize("kind", GATES)
def test_fla_chunk_matches_reference(kind):
    inputs = make_inputs(kind)
    compare(kind, run_with_grads(fla_chunk_gla, *inputs), run_with_grads(chunk_gla, *inputs))


@pytest.mark.parametrize("kind", GATES)
def test_fla_chunk_packed_segments_match_reference(kind):
    lengths = [1, 63, 65, 700, 1000, 2267]  # 4096 tokens, boundaries off the 64-token grid
    cu = torch.tensor([0, *itertools.accumulate(lengths)], device="cuda", dtype=torch.int32)
    inputs = make_inputs(kind, batch=1, length=int(cu[-1]), n_states=len(lengths))
    fast = run_with_grads(fla_chunk_gla, *inputs, cu_seqlens=cu)
    compare(f"{kind} packed", fast, run_with_grads(chunk_gla, *inputs, cu_seqlens=cu))


@pytest.mark.parametrize("kind", GATES)
def test_fla_decode_steps_match_reference(kind):
    q, k, v, g, h0 = make_inputs(kind, length=4)
    state, state_ref = h0.clone(), h0.clone()
    for t in range(4):
        g_t = g if g.ndim == 1 else g[:, t : t + 1]
        token = (q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], g_t)
        o, state = fla_fused_recurrent_gla(*token, initial_state=state, output_final_state=True)
        o_ref, state_ref = naive_recurrent_gla(*token, initial_state=state_ref, output_final_state=True)
        assert o.dtype == torch.bfloat16 and state.dtype == torch.float32
        assert_close(f"{kind} step {t} o", o.float(), o_ref.float(), **BF16)
        assert_close(f"{kind} step {t} state", state, state_ref, rtol=1e-4, atol=0.0)


# ------------------------------------------------------------------------------ mixers and the model

MIXER_ARGS = {
    "mamba2": dict(mamba2={"head_dim": 64, "d_state": 128, "expand": 2}),
    "hgrn2": dict(linear={"n_heads": 8, "head_dim": 128, "expand_v": 1.0}),
    "retnet": dict(linear={"n_heads": 8, "head_dim": 128, "expand_v": 2.0}),
}


def gpu_model(family: str, loop_count: int = 2):
    model = tiny_model(family, loop_count, dim=1024, n_heads=8, n_kv_heads=8, ffn_dim=2048, **MIXER_ARGS[family])
    return model.to(device="cuda", dtype=torch.bfloat16)


@pytest.mark.parametrize("family", list(MIXER_ARGS))
def test_mixer_fla_matches_reference_forward_and_backward(family):
    mixer = gpu_model(family).layers[0].mixer.train()
    x = torch.randn(B, T, 1024, device="cuda", dtype=torch.bfloat16)
    seq, spec = SeqInfo.for_training(torch.arange(T, device="cuda").expand(B, T)), MixerSpec(family)
    results = []
    for force_reference in (False, True):
        mixer.zero_grad()
        if force_reference:
            with backend.reference():
                y = mixer(x, seq, None, spec)
        else:
            y = mixer(x, seq, None, spec)
        (y.float() * torch.linspace(-1, 1, 1024, device="cuda")).sum().backward()
        results.append((y.detach().float(), {n: p.grad.float() for n, p in mixer.named_parameters()}))
    (y, grads), (y_ref, grads_ref) = results
    assert_close(f"{family} output", y, y_ref, **BF16)
    for name in grads:
        assert_close(f"{family} d{name}", grads[name], grads_ref[name], **GRAD_BF16)


@pytest.mark.parametrize("family", list(MIXER_ARGS))
def test_prefill_then_decode_equals_forward_on_fla(family):
    model = gpu_model(family)
    tokens = torch.randint(0, 97, (B, 300), device="cuda")
    with torch.no_grad():
        full = model(tokens).float()
        logits, state = model.prefill(tokens[:, :257], max_len=300)
        outs = [logits.float()]
        for t in range(257, 300):
            step, state = model.step(tokens[:, t], state)
            outs.append(step[:, None].float())
    assert_close(f"{family} decode vs forward", torch.cat(outs, 1), full, **BF16)


@pytest.mark.parametrize("family", list(MIXER_ARGS))
def test_cuda_graph_decode_step_equals_eager(family):
    """model.decode_step captured once in a CUDA graph and replayed == the same steps run eagerly."""
    model = gpu_model(family)
    tokens = torch.randint(0, 97, (B, 80), device="cuda")
    with torch.no_grad():
        _, eager = model.prefill(tokens[:, :64], max_len=80)
        _, graphed = model.prefill(tokens[:, :64], max_len=80)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up steps (Triton autotuning) are real steps, outside the capture
            for t in (64, 65):
                model.decode_step(tokens[:, t].clone(), graphed)
        torch.cuda.current_stream().wait_stream(stream)
        for t in (64, 65):
            model.decode_step(tokens[:, t].clone(), eager)
        static_token = tokens[:, 66].clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records the step without running it
            static_logits = model.decode_step(static_token, graphed)
        for t in range(66, 80):
            static_token.copy_(tokens[:, t])
            graph.replay()
            expected = model.decode_step(tokens[:, t].clone(), eager)
            assert_close(f"{family} graph step {t}", static_logits.float(), expected.float(), rtol=1e-3, atol=0.0)
