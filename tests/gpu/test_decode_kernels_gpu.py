"""The decode kernels (split-KV attention, fused GDN step) on a CUDA device in bf16, at the 1.3B shapes.

- decode_attention vs the fp32 oracle: static buffer of 32768 slots, valid lengths 1, 1000 and 32768,
  batch 1 and 8 (the last row left-padded), 16 KV heads of 128 (the 1.3B's full attention, G = 1) and
  4 KV heads (G = 4, the tensor-core path); a 2048-entry window ring, wrapped;
- fused_gdn_decode_step vs the fp32 oracle: 16 heads, Dk 96, Dv 192, conv 4, batch 1 and 8, three
  consecutive steps; y, state and conv caches; the default tile (all of Dv at once) and 64-column blocks;
- CUDA graphs: each kernel captured once and replayed gives bitwise the eager result, attention at new
  lengths written into the device `length` (no recapture), GDN over three steps of in-place updates.

Uninitialised memory is poisoned (NaN) so an unwritten output element fails. References compute in fp32
from the same bf16 inputs; tolerances are relative RMS errors.

Run: pytest -m gpu tests/gpu/test_decode_kernels_gpu.py
"""

from __future__ import annotations

import pytest
import torch

from lt2.kernels.decode_attention import naive_decode_attention
from lt2.kernels.gdn_decode import GDNDecodeStep, naive_gdn_decode_step
from lt2.testing import assert_close, random_gdn_decode_step

pytest.importorskip("triton", reason="the decode kernels need triton")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

RTOL = 1e-2  # bf16 inputs and outputs
S_MAX, H, D = 32768, 16, 128  # 1.3B full attention: 16 heads of 128
GDN = dict(H=16, Dk=96, Dv=192, K=4)  # 1.3B GDN: head_dim 96, expand_v 2, conv 4


@pytest.fixture(autouse=True)
def poisoned():
    """torch.empty fills with NaN while a test runs (deterministic mode), so unwritten outputs fail."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def randn(gen: torch.Generator, *shape: int, dtype=torch.bfloat16) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, device="cuda", dtype=torch.float32).to(dtype)


def attention_inputs(B: int, Hkv: int, length: int, seed: int, pad: int = 100) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    key_mask = torch.zeros(B, S_MAX, dtype=torch.bool, device="cuda")
    key_mask[:, :length] = True
    if B > 1:
        key_mask[-1, : min(pad, length - 1)] = False  # left padding; the query's own slot stays real
    return dict(
        q=randn(gen, B, H, D),
        k=randn(gen, B, S_MAX, Hkv, D),
        v=randn(gen, B, S_MAX, Hkv, D),
        length=torch.tensor([length], device="cuda"),
        key_mask=key_mask,
    )


@pytest.mark.parametrize("length", [1, 1000, S_MAX])
@pytest.mark.parametrize("Hkv", [16, 4], ids=["G1", "G4"])
@pytest.mark.parametrize("B", [1, 8], ids=["B1", "B8"])
def test_decode_attention_bf16_matches_oracle(B, Hkv, length):
    from lt2.kernels.decode_attention import decode_attention

    inputs = attention_inputs(B, Hkv, length, seed=length + B)
    o = decode_attention(**inputs)
    assert o.dtype == torch.bfloat16
    assert_close("o", o, naive_decode_attention(**inputs).to(torch.bfloat16), rtol=RTOL)


def ring_inputs(B: int, length: int, seed: int, W: int = 2048, max_len: int = 8192) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    slots = torch.arange(length, device="cuda")[-W:]
    slot_of = torch.full((W,), -1, dtype=torch.long, device="cuda")
    slot_of[slots % W] = slots
    key_mask = torch.zeros(B, max_len, dtype=torch.bool, device="cuda")
    key_mask[:, :length] = True
    key_mask[-1, : length - 300] = False  # the last row's prompt was short: only 300 real slots in the window
    return dict(
        q=randn(gen, B, H, D),
        k=randn(gen, B, W, H, D),
        v=randn(gen, B, W, H, D),
        length=torch.tensor([length], device="cuda"),
        key_mask=key_mask,
        window=W,
        slot_of=slot_of,
    )


@pytest.mark.parametrize("B", [1, 8], ids=["B1", "B8"])
def test_decode_attention_ring_bf16_matches_oracle(B):
    from lt2.kernels.decode_attention import decode_attention

    inputs = ring_inputs(B, length=5000, seed=B)
    assert_close("o", decode_attention(**inputs), naive_decode_attention(**inputs).to(torch.bfloat16), rtol=RTOL)


def capture(fn):
    """Warm up (compile) `fn` on a side stream, then capture it; returns (graph, its static output)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def advance(inputs: dict, length: int) -> None:
    """Move the inputs to a new length in place, as decode steps would: slots written, a new query."""
    inputs["key_mask"][:, int(inputs["length"]) : length] = True  # decoded tokens are real in every row
    inputs["length"].fill_(length)
    inputs["q"].copy_(torch.randn_like(inputs["q"]))
    if "slot_of" in inputs:
        W = inputs["slot_of"].numel()
        slots = torch.arange(length, device="cuda")[-W:]
        inputs["slot_of"][slots % W] = slots


@pytest.mark.parametrize("ring", [False, True], ids=["full", "ring"])
def test_decode_attention_graph_replays_at_new_lengths(ring):
    """One capture serves every length: the kernels read `length` on the device."""
    from lt2.kernels.decode_attention import decode_attention

    inputs = ring_inputs(8, length=3000, seed=1) if ring else attention_inputs(8, 16, length=1000, seed=1)
    graph, out = capture(lambda: decode_attention(**inputs))
    for length in (3000, 4100, 6000) if ring else (1000, 1001, 20000, S_MAX):
        advance(inputs, length)
        graph.replay()
        eager = decode_attention(**inputs)
        assert torch.equal(out, eager), f"graph replay differs from eager at length {length}"
        expected = naive_decode_attention(**inputs).to(torch.bfloat16)
        assert_close(f"o (length {length})", out, expected, rtol=RTOL)


def gdn_step(B: int, seed: int) -> GDNDecodeStep:
    """A random bf16 step at the 1.3B GDN shapes (state and dt_bias fp32)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return random_gdn_decode_step(B, **GDN, generator=gen, device="cuda", dtype=torch.bfloat16)


@pytest.mark.parametrize("block_v", [None, 64], ids=["default", "bv64"])
@pytest.mark.parametrize("B", [1, 8], ids=["B1", "B8"])
def test_fused_gdn_step_bf16_matches_oracle(B, block_v):
    from lt2.kernels.gdn_decode.fused import fused_gdn_decode_fwd

    kernel = gdn_step(B, seed=B)
    oracle = kernel.clone_in_place()
    for step in range(3):
        if step:  # a new token: fresh projections, same weights, caches and state carried over
            fresh = gdn_step(B, seed=100 * B + step)
            kernel, oracle = kernel.with_token(fresh), oracle.with_token(fresh)
        y = fused_gdn_decode_fwd(kernel, block_v=block_v)  # the public function's launcher, with a tile knob
        expected = naive_gdn_decode_step(oracle)
        assert_close(f"y (step {step})", y, expected, rtol=RTOL)
        assert_close(f"state (step {step})", kernel.state, oracle.state, rtol=1e-4)
        for name in ("conv_q", "conv_k", "conv_v"):  # shifted copies of bf16 inputs: exact
            assert torch.equal(getattr(kernel, name), getattr(oracle, name)), f"{name} differs after step {step}"


def test_fused_gdn_graph_replays_equal_eager_steps():
    from lt2.kernels.gdn_decode import fused_gdn_decode_step

    static = gdn_step(8, seed=0)
    eager = static.clone_in_place()
    scratch = static.clone_in_place()  # warm-up mutates these
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fused_gdn_decode_step(scratch)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # capture records without running: the static state is untouched
        y_static = fused_gdn_decode_step(static)
    for step in range(3):
        fresh = gdn_step(8, seed=10 + step)
        for name in GDNDecodeStep.TOKEN:
            getattr(static, name).copy_(getattr(fresh, name))
        eager = eager.with_token(fresh)
        graph.replay()
        y = fused_gdn_decode_step(eager)
        assert torch.equal(y_static, y), f"y: graph replay differs from eager at step {step}"
        for name in GDNDecodeStep.IN_PLACE:
            a, b = getattr(static, name), getattr(eager, name)
            assert torch.equal(a, b), f"{name}: graph replay differs from eager at step {step}"
