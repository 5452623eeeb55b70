"""The delta-rule kernels on CPU: the chunked PyTorch form against the per-token oracle, and fla's own
naive references as a second oracle when fla is installed.

Checks outputs, final states and gradients (q, k, v, g, beta, initial state) for the three decays (none,
scalar, per key) at odd lengths around the chunk size, packed segments (cu_seqlens) against each segment
alone, strong per-key decays (finite, still exact), and the argument checks.

Run: pytest tests/kernels/test_delta_rule_kernels.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lt2.kernels.delta_rule import (
    chunk_delta_rule,
    fla_chunk_delta_rule,
    fla_fused_recurrent_delta_rule,
    naive_recurrent_delta_rule,
)
from lt2.testing import assert_close

GATES = ("none", "scalar", "vector")
LENGTHS = (1, 63, 64, 65, 127, 128, 129, 500)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core runner the threads oversubscribe
    (this file: 65 s with torch's default threads vs 4 s with one, measured with other jobs running)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_inputs(B, T, H, K, V, gate, dtype, seed, initial_state=True, decay_scale=1.0):
    """Random delta-rule inputs with requires_grad set; g is a realistic log decay (softplus-shaped, <= 0)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    inputs = {
        "q": randn(B, T, H, K),
        "k": randn(B, T, H, K),
        "v": randn(B, T, H, V),
        "beta": torch.sigmoid(randn(B, T, H)),
        "g": None,
        "initial_state": randn(B, H, K, V) if initial_state else None,
    }
    if gate != "none":
        shape = (B, T, H) if gate == "scalar" else (B, T, H, K)
        inputs["g"] = -decay_scale * F.softplus(randn(*shape) - 1.0)
    for x in inputs.values():
        if x is not None:
            x.requires_grad_(True)
    return inputs


def run_with_grads(fn, inputs, seed, **kwargs):
    """o, final state and d(loss)/d(input) for every input, loss = <o, dO> + <S, dS> with random cotangents."""
    o, S = fn(**inputs, output_final_state=True, **kwargs)
    gen = torch.Generator().manual_seed(seed + 1)
    loss = (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
    loss = loss + (S * torch.randn(S.shape, generator=gen, dtype=S.dtype)).sum()
    names = [n for n, x in inputs.items() if x is not None]
    grads = torch.autograd.grad(loss, [inputs[n] for n in names])
    return o, S, dict(zip(names, grads))


def assert_same(tag, actual, expected, rtol, atol):
    o1, S1, g1 = actual
    o2, S2, g2 = expected
    assert_close(f"{tag} o", o1, o2, rtol, atol)
    assert_close(f"{tag} final state", S1, S2, rtol, atol)
    assert g1.keys() == g2.keys()
    for name in g1:
        assert_close(f"{tag} d{name}", g1[name], g2[name], rtol, atol)


@pytest.mark.parametrize("T", LENGTHS, ids=[f"T{t}" for t in LENGTHS])
@pytest.mark.parametrize("gate", GATES)
def test_chunk_matches_naive_fp64(gate, T):
    inputs = make_inputs(2, T, 2, 8, 16, gate, torch.float64, seed=T)
    kwargs = dict(use_qk_l2norm=True)
    expected = run_with_grads(naive_recurrent_delta_rule, inputs, seed=T, **kwargs)
    actual = run_with_grads(chunk_delta_rule, inputs, seed=T, **kwargs)
    assert_same(f"B2-T{T}-H2-K8-V16-{gate}-fp64", actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", (65, 500), ids=["T65", "T500"])
@pytest.mark.parametrize("gate", GATES)
def test_chunk_matches_naive_fp32(gate, T):
    inputs = make_inputs(2, T, 3, 16, 8, gate, torch.float32, seed=7 * T)
    expected = run_with_grads(naive_recurrent_delta_rule, inputs, seed=1, use_qk_l2norm=True, scale=0.3)
    actual = run_with_grads(chunk_delta_rule, inputs, seed=1, use_qk_l2norm=True, scale=0.3)
    assert_same(f"B2-T{T}-H3-K16-V8-{gate}-fp32", actual, expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_size", (1, 16, 48, 128), ids=lambda c: f"C{c}")
@pytest.mark.parametrize("gate", GATES)
def test_chunk_sizes(gate, chunk_size):
    # 48 leaves a short last sub-chunk in the per-key path; 1 is the recurrence itself.
    inputs = make_inputs(1, 150, 2, 8, 8, gate, torch.float64, seed=chunk_size)
    expected = run_with_grads(naive_recurrent_delta_rule, inputs, seed=3)
    actual = run_with_grads(chunk_delta_rule, inputs, seed=3, chunk_size=chunk_size)
    assert_same(f"B1-T150-H2-K8-V8-{gate}-C{chunk_size}", actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gate", ("scalar", "vector"))
def test_strong_decay_stays_finite_and_exact(gate):
    # ~-30 per step: a 64-token chunk spans e^-1900. Splitting exp(G_i - G_j) as exp(G_i) * exp(-G_j) would
    # overflow fp32 after 3 tokens; the sub-chunk reference points keep every exponent <= 0.
    inputs = make_inputs(2, 130, 2, 8, 8, gate, torch.float32, seed=11, decay_scale=30.0)
    with torch.no_grad():  # mix strong and weak channels so the state keeps something to read
        inputs["g"][..., ::2] *= 1e-3
    expected = run_with_grads(naive_recurrent_delta_rule, inputs, seed=5, use_qk_l2norm=True)
    actual = run_with_grads(chunk_delta_rule, inputs, seed=5, use_qk_l2norm=True)
    for grad in actual[2].values():
        assert torch.isfinite(grad).all()
    assert_same(f"B2-T130-H2-K8-V8-{gate}-strong", actual, expected, rtol=5e-5, atol=1e-6)


@pytest.mark.parametrize("gate", GATES)
def test_varlen_equals_each_segment_alone(gate):
    lengths = [1, 63, 0, 65, 129, 200]  # one empty segment: its state passes through unchanged
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    total, N = int(cu[-1]), len(lengths)
    inputs = make_inputs(1, total, 2, 8, 16, gate, torch.float64, seed=21)
    inputs["initial_state"] = torch.randn(N, 2, 8, 16, dtype=torch.float64, requires_grad=True)
    packed = run_with_grads(chunk_delta_rule, inputs, seed=9, cu_seqlens=cu, use_qk_l2norm=True)

    o_parts, S_parts = [], []
    for n in range(N):
        s, e = int(cu[n]), int(cu[n + 1])
        segment = {
            name: (None if x is None else x[n : n + 1] if name == "initial_state" else x[:, s:e])
            for name, x in inputs.items()
        }
        o, S = naive_recurrent_delta_rule(**segment, output_final_state=True, use_qk_l2norm=True)
        o_parts.append(o)
        S_parts.append(S)
    o_alone, S_alone = torch.cat(o_parts, 1), torch.cat(S_parts, 0)
    # Same cotangents as run_with_grads, so the gradients must match too.
    gen = torch.Generator().manual_seed(10)
    loss = (o_alone * torch.randn(o_alone.shape, generator=gen, dtype=o_alone.dtype)).sum()
    loss = loss + (S_alone * torch.randn(S_alone.shape, generator=gen, dtype=S_alone.dtype)).sum()
    names = [n for n, x in inputs.items() if x is not None]
    grads = dict(zip(names, torch.autograd.grad(loss, [inputs[n] for n in names])))
    assert_same(f"varlen{lengths}-{gate}", packed, (o_alone, S_alone, grads), rtol=1e-10, atol=1e-12)
    assert torch.equal(packed[1][2], inputs["initial_state"][2].detach())  # the empty segment


def test_output_dtype_and_state_dtype():
    inputs = make_inputs(1, 70, 2, 8, 8, "vector", torch.bfloat16, seed=1)
    o, S = chunk_delta_rule(**inputs, output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    o_ref, S_ref = naive_recurrent_delta_rule(**inputs, output_final_state=True)
    assert_close("bf16 inputs o", o.float(), o_ref.float(), rtol=1e-2, atol=1e-3)
    assert_close("bf16 inputs state", S, S_ref, rtol=1e-5, atol=1e-6)


def _good():
    return dict(
        q=torch.zeros(1, 5, 2, 4),
        k=torch.zeros(1, 5, 2, 4),
        v=torch.zeros(1, 5, 2, 6),
        beta=torch.zeros(1, 5, 2),
    )


BAD_INPUTS = {
    "q-3d": (dict(q=torch.zeros(5, 2, 4)), r"q must be \[B, T, H, K\], got shape \(5, 2, 4\)"),
    "k-shape": (dict(k=torch.zeros(1, 5, 2, 3)), r"k shape \(1, 5, 2, 3\) != q shape \(1, 5, 2, 4\)"),
    "v-heads": (dict(v=torch.zeros(1, 5, 3, 6)), r"v must be \[B, T, H, V\] = \[1, 5, 2, V\]"),
    "beta-shape": (dict(beta=torch.zeros(1, 5, 2, 1)), r"beta must be \[B, T, H\] = \[1, 5, 2\]"),
    "g-shape": (dict(g=torch.zeros(1, 5, 2, 3)), r"got shape \(1, 5, 2, 3\)"),
    "state-shape": (dict(initial_state=torch.zeros(1, 2, 6, 4)), r"\[N, H, K, V\] = \[1, 2, 4, 6\]"),
    "varlen-batch": (
        dict(
            q=torch.zeros(2, 5, 2, 4),
            k=torch.zeros(2, 5, 2, 4),
            v=torch.zeros(2, 5, 2, 6),
            beta=torch.zeros(2, 5, 2),
            cu_seqlens=torch.tensor([0, 5]),
        ),
        r"B = 1, got B = 2",
    ),
    "varlen-end": (dict(cu_seqlens=torch.tensor([0, 2, 4])), r"end at the token count 5, got \[0, 2, 4\]"),
    "varlen-state": (
        dict(cu_seqlens=torch.tensor([0, 2, 5]), initial_state=torch.zeros(1, 2, 4, 6)),
        r"\[N, H, K, V\] = \[2, 2, 4, 6\]",
    ),
    "chunk-size": (dict(chunk_size=0), r"chunk_size must be >= 1, got 0"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_inputs_raise(case):
    changes, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        chunk_delta_rule(**{**_good(), **changes})


@pytest.mark.parametrize("fn", (fla_chunk_delta_rule, fla_fused_recurrent_delta_rule), ids=["chunk", "recurrent"])
def test_fla_glue_refuses_cpu_tensors(fn):
    with pytest.raises(ValueError, match="CUDA only"):
        fn(**_good())


@pytest.mark.parametrize(
    ("gate", "chunked", "kernel"),
    [
        (None, True, "fla.ops.delta_rule.chunk_delta_rule"),
        (None, False, "fla.ops.delta_rule.fused_recurrent_delta_rule"),
        ("head", True, "fla.ops.gated_delta_rule.chunk_gated_delta_rule"),
        ("head", False, "fla.ops.gated_delta_rule.fused_recurrent_gated_delta_rule"),
        ("key", True, "fla.ops.kda.chunk_kda"),
        ("key", False, "fla.ops.kda.fused_recurrent_kda"),
    ],
)
def test_fla_glue_picks_the_kernel_by_gate_shape(gate, chunked, kernel, monkeypatch):
    """The gate's shape picks DeltaNet / GDN / KDA, called by keyword with fla's argument names (fla stubbed:
    its kernels need CUDA)."""
    import sys
    import types

    import lt2.kernels.delta_rule.fla as glue

    calls = []
    module_name, _, name = kernel.rpartition(".")
    stub = types.ModuleType(module_name)
    setattr(stub, name, lambda **kwargs: calls.append(kwargs) or ("o", "S"))
    monkeypatch.setitem(sys.modules, module_name, stub)
    monkeypatch.setattr(glue, "_check_fla", lambda q, g, chunked: None)
    args = _good()
    args["g"] = {None: None, "head": -torch.rand(1, 5, 2), "key": -torch.rand(1, 5, 2, 4)}[gate]
    fn = fla_chunk_delta_rule if chunked else fla_fused_recurrent_delta_rule
    assert fn(**args, use_qk_l2norm=True) == ("o", "S")
    (kwargs,) = calls
    expected = {"q", "k", "v", "beta", "scale", "initial_state", "output_final_state", "use_qk_l2norm_in_kernel",
                "cu_seqlens"} | ({"g"} if gate else set())  # fmt: skip
    assert set(kwargs) == expected and kwargs["use_qk_l2norm_in_kernel"] is True
    assert kwargs["g"] is args["g"] if gate else "g" not in kwargs


# --------------------------------------------------------------- fla's naive references as a second oracle
def _load_fla_naive(relative: str):
    """Load one of fla's pure-PyTorch naive.py files by path: `import fla` itself needs Triton (a GPU build)."""
    fla_spec = importlib.util.find_spec("fla")
    if fla_spec is None or importlib.util.find_spec("einops") is None:
        pytest.skip("flash-linear-attention and einops are not installed (second oracle unavailable)")
    path = Path(fla_spec.submodule_search_locations[0]) / relative
    spec = importlib.util.spec_from_file_location(f"_fla_naive_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _normalised_inputs(T, gate, K=8, V=16):
    inputs = make_inputs(2, T, 2, K, V, gate, torch.float32, seed=T + len(gate))
    with torch.no_grad():  # fla's naive references take q, k already normalised
        inputs["q"].copy_(F.normalize(inputs["q"], dim=-1))
        inputs["k"].copy_(F.normalize(inputs["k"], dim=-1))
    return {n: x.detach() if x is not None else None for n, x in inputs.items()}


# family -> (our gate form, fla's naive module, its recurrent and chunked references)
FLA_NAIVE = {
    "gdn": (
        "scalar",
        "ops/gated_delta_rule/naive.py",
        "naive_recurrent_gated_delta_rule",
        "naive_chunk_gated_delta_rule",
    ),
    "kda": ("vector", "ops/kda/naive.py", "naive_recurrent_kda", "naive_chunk_kda"),
}


@pytest.mark.parametrize("T", (65, 128), ids=["T65", "T128"])
@pytest.mark.parametrize("family", FLA_NAIVE)
def test_fla_naive_gated_families(family, T):
    gate, path, recurrent, chunked = FLA_NAIVE[family]
    naive = _load_fla_naive(path)
    x = _normalised_inputs(T, gate)
    ours, S = chunk_delta_rule(**x, output_final_state=True)
    fns = {"recurrent": getattr(naive, recurrent)}
    if family == "gdn" or T % 64 == 0:  # fla's naive chunked KDA needs whole chunks
        fns["chunk"] = getattr(naive, chunked)
    for name, fn in fns.items():
        o_fla, S_fla = fn(**{n: x[n] for n in ("q", "k", "v", "beta", "g", "initial_state")}, output_final_state=True)
        assert_close(f"fla naive {name} {family} o", ours, o_fla, rtol=1e-5, atol=1e-6)
        assert_close(f"fla naive {name} {family} state", S, S_fla, rtol=1e-5, atol=1e-6)


def test_fla_naive_delta_rule():
    naive = _load_fla_naive("ops/delta_rule/naive.py")
    x = _normalised_inputs(129, "none")
    ours, S = chunk_delta_rule(**x, output_final_state=True)

    def head_first(t):  # fla's old naive DeltaNet reference is [B, H, T, D]
        return t.transpose(1, 2)

    o_fla, S_fla = naive.delta_rule_recurrence(
        head_first(x["q"]),
        head_first(x["k"]),
        head_first(x["v"]),
        x["beta"].transpose(1, 2),
        initial_state=x["initial_state"],
        output_final_state=True,
    )
    assert_close("fla naive deltanet o", ours, head_first(o_fla), rtol=1e-5, atol=1e-6)
    assert_close("fla naive deltanet state", S, S_fla, rtol=1e-5, atol=1e-6)
