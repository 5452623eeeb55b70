"""fla's delta-rule kernels (gdn, kda, deltanet) against the PyTorch references on a CUDA device, in bf16.

- kernels at realistic sizes (B=2, T=2048; GDN 16 heads of 96 with expand_v 2): chunked forward + backward
  (q, k, v, g, beta, initial state), packed segments (cu_seqlens), and the recurrent decode kernel;
- the model (dim 1024, packed documents) forward + backward with the fast path vs `backend.reference()`;
- prefill + one-token decode == forward on the fast path, and the decode step captured in a CUDA graph.

References compute in fp32 from the same bf16 inputs; tolerances are relative RMS errors (fla's tests use
0.005-0.02 for the same comparisons). Needs fla >= 0.6; on Hopper, fla 0.6 refuses the gated backward
with triton < 3.7.1 unless tilelang is installed (see the project's device notes).

Run: pytest -m gpu tests/gpu/test_delta_rule_gpu.py
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lt2.config import LinearArgs, ModelArgs
from lt2.kernels import backend
from lt2.kernels.delta_rule import (
    chunk_delta_rule,
    fla_chunk_delta_rule,
    fla_fused_recurrent_delta_rule,
    naive_recurrent_delta_rule,
)
from lt2.model.looped import LoopedLM
from lt2.testing import assert_close

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not backend.has_fla(), reason="needs flash-linear-attention (fla)"),
]

# family: (gate, H, K, V) at the kernel level
FAMILIES = {
    "gdn": ("scalar", 16, 96, 192),
    "kda": ("vector", 8, 128, 128),
    "deltanet": ("none", 8, 128, 128),
}
FWD_RTOL, BWD_RTOL = 1e-2, 2e-2
# Model logits, decode (fla's recurrent kernel) vs forward (its chunked kernel), both bf16 end to end through
# 2 loops x 2 layers: measured 1.3-1.5e-2 on an H100 for all three families.
DECODE_RTOL = 3e-2


def kernel_inputs(gate: str, B: int, T: int, H: int, K: int, V: int, n_states: int, seed: int) -> dict:
    """bf16 q/k/v/beta, fp32 log decay (as fla takes it) and fp32 initial states [n_states, H, K, V]."""
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, generator=gen, device="cuda", dtype=torch.float32).to(dtype)

    g = None
    if gate != "none":
        g = F.logsigmoid(randn(*((B, T, H) if gate == "scalar" else (B, T, H, K)), dtype=torch.float32))
    return {
        "q": randn(B, T, H, K),
        "k": randn(B, T, H, K),
        "v": randn(B, T, H, V),
        "beta": torch.sigmoid(randn(B, T, H)),
        "g": g,
        "initial_state": randn(n_states, H, K, V, dtype=torch.float32),
    }


def forward_backward(fn, inputs: dict, upcast: bool, seed: int, **kwargs):
    """o, final state and the gradients of every input for random cotangents (fixed by `seed`)."""
    leaves = {
        name: (x.float() if upcast else x).detach().clone().requires_grad_(True)
        for name, x in inputs.items()
        if x is not None
    }
    o, S = fn(**{**inputs, **leaves}, output_final_state=True, use_qk_l2norm=True, **kwargs)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    do = torch.randn(o.shape, generator=gen, device="cuda").to(torch.bfloat16).to(o.dtype)
    dS = torch.randn(S.shape, generator=gen, device="cuda")
    torch.autograd.backward([o, S], [do, dS])
    return o, S, {name: x.grad for name, x in leaves.items()}


def assert_fast_matches_reference(tag: str, fast, reference) -> None:
    (o, S, grads), (o_ref, S_ref, grads_ref) = fast, reference
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert_close(f"{tag} o", o.float(), o_ref, rtol=FWD_RTOL, atol=0.0)
    assert_close(f"{tag} final state", S, S_ref, rtol=FWD_RTOL, atol=0.0)
    for name, grad in grads.items():
        assert_close(f"{tag} d{name}", grad.float(), grads_ref[name], rtol=BWD_RTOL, atol=0.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunk_forward_backward(family):
    gate, H, K, V = FAMILIES[family]
    inputs = kernel_inputs(gate, 2, 2048, H, K, V, n_states=2, seed=0)
    fast = forward_backward(fla_chunk_delta_rule, inputs, upcast=False, seed=1)
    reference = forward_backward(chunk_delta_rule, inputs, upcast=True, seed=1)
    assert_fast_matches_reference(f"{family}-B2-T2048-H{H}-K{K}-V{V}-bf16", fast, reference)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunk_varlen(family):
    gate, H, K, V = FAMILIES[family]
    cu_seqlens = torch.tensor([0, 1, 700, 764, 2048, 2113], dtype=torch.int32, device="cuda")
    inputs = kernel_inputs(gate, 1, 2113, H, K, V, n_states=5, seed=2)
    fast = forward_backward(fla_chunk_delta_rule, inputs, upcast=False, seed=3, cu_seqlens=cu_seqlens)
    reference = forward_backward(chunk_delta_rule, inputs, upcast=True, seed=3, cu_seqlens=cu_seqlens)
    assert_fast_matches_reference(f"{family}-varlen-H{H}-K{K}-V{V}-bf16", fast, reference)


@pytest.mark.parametrize("T", (1, 16), ids=["T1", "T16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_fused_recurrent_step(family, T):
    gate, H, K, V = FAMILIES[family]
    inputs = kernel_inputs(gate, 2, T, H, K, V, n_states=2, seed=4)
    with torch.no_grad():
        o, S = fla_fused_recurrent_delta_rule(**inputs, output_final_state=True, use_qk_l2norm=True)
        o_ref, S_ref = naive_recurrent_delta_rule(**inputs, output_final_state=True, use_qk_l2norm=True)
    assert_close(f"{family}-T{T} recurrent o", o.float(), o_ref.float(), rtol=FWD_RTOL, atol=0.0)
    assert_close(f"{family}-T{T} recurrent state", S, S_ref, rtol=FWD_RTOL, atol=0.0)


# ----------------------------------------------------------------------------------------------- the model
MODEL_LINEAR = {
    "gdn": {"n_heads": 8, "head_dim": 96, "expand_v": 2.0},
    "kda": {"n_heads": 8, "head_dim": 128, "expand_v": 1.0},
    "deltanet": {"n_heads": 8, "head_dim": 128, "expand_v": 1.0},
}
VOCAB = 1024


def gpu_model(pattern: str) -> LoopedLM:
    args = ModelArgs(
        vocab_size=VOCAB,
        dim=1024,
        n_layers=2,
        loop_count=2,
        pattern=pattern,
        n_heads=8,
        ffn_dim=2816,
        max_seqlen=4096,
        linear=LinearArgs(**MODEL_LINEAR[pattern]),
    )
    with torch.device("cuda"):
        model = LoopedLM(args)
    model.init_weights()
    return model.to(torch.bfloat16)


def random_tokens(B: int, T: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(0, VOCAB, (B, T), generator=gen, device="cuda")


@pytest.mark.parametrize("pattern", FAMILIES)
def test_model_fast_path_matches_reference(pattern):
    model = gpu_model(pattern)
    toks = random_tokens(2, 2048, seed=5)
    doc_start = torch.zeros_like(toks, dtype=torch.bool)
    doc_start[0, [0, 777]] = True
    doc_start[1, [0, 64, 1500]] = True

    def run():
        model.zero_grad(set_to_none=True)
        logits = model(toks, doc_start)
        F.cross_entropy(logits[:, :-1].float().reshape(-1, VOCAB), toks[:, 1:].reshape(-1)).backward()
        return logits.detach(), {name: p.grad.float() for name, p in model.named_parameters()}

    logits, grads = run()
    with backend.reference():
        logits_ref, grads_ref = run()
    assert_close(f"{pattern} logits", logits.float(), logits_ref.float(), rtol=FWD_RTOL, atol=0.0)
    for name, grad in grads.items():
        assert_close(f"{pattern} grad {name}", grad, grads_ref[name], rtol=3 * BWD_RTOL, atol=0.0)


@pytest.mark.parametrize("pattern", FAMILIES)
def test_decode_matches_forward(pattern):
    model = gpu_model(pattern).eval()
    toks = random_tokens(2, 150, seed=6)
    with torch.no_grad():
        full = model(toks)
    logits, state = model.prefill(toks[:, :130], max_len=150)
    assert_close(f"{pattern} prefill", logits.float(), full[:, :130].float(), rtol=FWD_RTOL, atol=0.0)
    for t in range(130, 150):
        logits, state = model.step(toks[:, t], state)
        assert_close(f"{pattern} decode step {t}", logits.float(), full[:, t].float(), rtol=DECODE_RTOL, atol=0.0)


@pytest.mark.parametrize("pattern", FAMILIES)
def test_decode_step_cuda_graph(pattern):
    model = gpu_model(pattern).eval()
    toks = random_tokens(2, 140, seed=7)
    prompt, new = toks[:, :130], toks[:, 130:]

    _, state = model.prefill(prompt, max_len=140)
    eager = [model.step(new[:, i], state)[0] for i in range(new.shape[1])]

    token = new[:, 0].clone()  # the graph's static input [B]
    with torch.no_grad():
        # Warm up on a throwaway state so that every Triton kernel is compiled (and autotuned) before capture.
        _, warm = model.prefill(prompt, max_len=140)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                model.decode_step(token, warm)
        torch.cuda.current_stream().wait_stream(side)

        _, state = model.prefill(prompt, max_len=140)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = model.decode_step(token, state)
    for i in range(new.shape[1]):
        token.copy_(new[:, i])
        graph.replay()
        assert_close(f"{pattern} graph replay {i}", logits.float(), eager[i].float(), rtol=1e-3, atol=0.0)
