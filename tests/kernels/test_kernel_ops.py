"""Our Triton decode kernels as registered ops (`lt2::decode_attention`, `lt2::fused_gdn_decode`), on CPU
through Triton's interpreter in fp32:

- torch.library.opcheck: schema, fake (meta) implementation and the declared in-place updates agree with
  what the kernels do;
- torch.compile(fullgraph=True) of a step that calls them (the bool key mask, Python-float scalars and
  in-place cache updates included) lowers through Inductor and equals the eager call: on CUDA the traced
  launch code failed to lower (`view(uint8)` of a bool mask) and user kernels got fp64 scalars.

Run: pytest tests/kernels/test_kernel_ops.py
"""

from __future__ import annotations

import dataclasses

import torch

from lt2.testing import assert_close, random_gdn_decode_step


def attention_inputs(ring: bool):
    gen = torch.Generator().manual_seed(0)
    B, H, Hkv, D, S = 2, 4, 2, 16, 24
    q = torch.randn(B, H, D, generator=gen)
    k, v = torch.randn(2, B, S, Hkv, D, generator=gen)
    key_mask = torch.ones(B, 40 if ring else S, dtype=torch.bool)
    key_mask[1, :3] = False  # left padding
    if ring:  # entries hold absolute slots 10..33, one still empty
        slot_of = torch.arange(10, 10 + S)
        slot_of[5] = -1
        return (q, k, v, torch.tensor([34]), key_mask), {"window": 16, "slot_of": slot_of}
    return (q, k, v, torch.tensor([20]), key_mask), {}


def check_attention_op(ring: bool) -> None:
    """Worker side: opcheck, then the compiled call equals the eager one."""
    from lt2.kernels.decode_attention import decode_attention
    from lt2.kernels.decode_attention.split_kv import decode_attention_op

    args, kwargs = attention_inputs(ring)
    q, k, v, length, key_mask = args
    torch.library.opcheck(
        decode_attention_op, (q, k, v, length, key_mask, kwargs.get("window"), kwargs.get("slot_of"), 2)
    )
    eager = decode_attention(*args, **kwargs)
    compiled = torch.compile(lambda *a: decode_attention(*a, **kwargs), fullgraph=True, dynamic=False)(*args)
    assert_close("compiled vs eager", compiled, eager, rtol=1e-6)


def check_gdn_op() -> None:
    """Worker side: opcheck, then two compiled steps equal two eager ones (y, caches and state)."""
    from lt2.kernels.gdn_decode import GDNDecodeStep, fused_gdn_decode_step
    from lt2.kernels.gdn_decode.fused import fused_gdn_decode_op

    gen = torch.Generator().manual_seed(0)
    eager = random_gdn_decode_step(2, 2, 16, 32, 4, gate=True, generator=gen)
    compiled = eager.clone_in_place()
    copy = eager.clone_in_place()
    fields = {f.name: getattr(copy, f.name) for f in dataclasses.fields(copy)}
    torch.library.opcheck(fused_gdn_decode_op, (), fields)

    step_fn = torch.compile(lambda s: fused_gdn_decode_step(s) * 2.0, fullgraph=True, dynamic=False)
    for step in range(2):
        y_eager = fused_gdn_decode_step(eager) * 2.0
        y_compiled = step_fn(compiled)
        assert_close(f"y (step {step})", y_compiled, y_eager, rtol=1e-6)
        for name in GDNDecodeStep.IN_PLACE:
            assert_close(f"{name} (step {step})", getattr(compiled, name), getattr(eager, name), rtol=1e-6)


def test_decode_attention_op_compiles(interpreted):
    interpreted(check_attention_op, False)
    interpreted(check_attention_op, True)


def test_fused_gdn_decode_op_compiles(interpreted):
    interpreted(check_gdn_op)


def check_dsa_op() -> None:
    """Worker side: opcheck, then the compiled no-grad call equals the eager one (o and lse)."""
    from lt2.kernels.dsa.parallel import parallel_sparse_attention, sparse_attention_op

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 4, 16, generator=gen)
    k, v = torch.randn(2, 2, 10, 2, 16, generator=gen)
    indices = torch.randint(0, 10, (2, 3, 5), generator=gen, dtype=torch.int32)
    indices[:, :, -1] = -1  # an unused slot
    torch.library.opcheck(sparse_attention_op, (q, k, v, indices, 0.25))
    with torch.no_grad():
        eager = parallel_sparse_attention(q, k, v, indices, return_lse=True)
        fn = torch.compile(lambda *a: parallel_sparse_attention(*a, return_lse=True), fullgraph=True, dynamic=False)
        compiled = fn(q, k, v, indices)
    for name, a, e in zip(("o", "lse"), compiled, eager, strict=True):
        assert_close(name, a, e, rtol=1e-6)


def test_dsa_sparse_attention_op_compiles(interpreted):
    interpreted(check_dsa_op)


def test_fast_path_lookups_trace_without_a_graph_break():
    """After load_fast_paths the library checks and the lazy kernel names are plain look-ups: a compiled
    function that makes them traces as one graph (fullgraph=True raises on a break)."""
    from lt2.kernels import backend, decode_attention, dsa, gdn_decode

    backend.load_fast_paths()
    for package in (decode_attention, dsa, gdn_decode):
        assert set(package._TRITON) <= set(vars(package)), package.__name__

    def step(x):
        fn = decode_attention.decode_attention
        return x + 1 if backend._has("fla") or backend._has("triton") or fn is None else x - 1

    torch._dynamo.reset()
    assert torch.equal(torch.compile(step, fullgraph=True)(torch.zeros(2)), step(torch.zeros(2)))


def check_compiled_decode_on_triton_path(pattern: str) -> tuple[int, float]:
    """Worker side: the model's decode step through our Triton kernels (interpreted), torch.compile'd as the
    CUDA engine compiles it, vs the same steps eager. Returns (compiled graphs, rel-RMS difference)."""
    from torch._dynamo.utils import counters

    from lt2.infer.decoder import Decoder
    from lt2.kernels import backend
    from lt2.testing import error_stats, tiny_model

    original = backend.use_fast
    backend.use_fast = lambda x, needs="torch": needs == "triton" and not backend._force_reference
    try:
        backend.load_fast_paths()  # what Decoder(compile=True) does on CUDA
        torch.manual_seed(0)
        model = tiny_model(pattern, 2, n_layers=1, window=8).float().eval()
        tokens = torch.randint(0, 97, (2, 22))
        logits = {}
        for name, compile in (("eager", False), ("compile", True)):
            torch._dynamo.reset()
            counters.clear()
            decoder = Decoder(model, 2, 24, compile=compile)
            decoder.prefill(tokens[:, :10])
            logits[name] = torch.stack([decoder.step(tokens[:, t])[0].clone() for t in range(10, 22)], 1)
        graphs = int(counters["stats"]["unique_graphs"])
    finally:
        backend.use_fast = original
    return graphs, error_stats(logits["compile"], logits["eager"])["rel_rms"]


def test_compiled_decode_step_through_the_triton_kernels_is_one_graph(interpreted):
    """Full attention and the window ring through the split-KV kernel (its bool key mask included), past the
    window so ring entries are overwritten: one graph over 12 steps, equal to eager in fp32."""
    graphs, err = interpreted(check_compiled_decode_on_triton_path, "interleave:1:1:full:window")
    assert graphs == 1 and err < 1e-5, (graphs, err)
