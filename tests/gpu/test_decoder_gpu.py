"""The decode engines on a CUDA device, bf16, at a small 1.3B-like layout (hybrids of every fast decode path).

For full attention (split-KV kernel), window (ring kernel), GDN (fused step) and DSA, in one 4:1 hybrid and
a GDN+DSA hybrid: the eager, CUDA-graph and torch.compile'd + graph decoders' logits, step after step, are
as close to the fp64 reference forward as verify-kernels asks (2x the bf16 reference's own error), and the
compiled step is one graph. The engines run with fused input projections (the Decoder's default), and the
graph engine once more before that without them.

Run: pytest -m gpu tests/gpu/test_decoder_gpu.py
"""

from __future__ import annotations

import copy

import pytest
import torch

from lt2.bench.verify import compare, format_check
from lt2.infer.decoder import Decoder
from lt2.kernels import backend
from lt2.testing import tiny_model

pytest.importorskip("triton", reason="the fast decode paths need triton")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PATTERNS = ["interleave:4:1:gdn:full", "interleave:1:1:window:gdn", "interleave:4:1:gdn:dsa"]


def bf16_model(pattern: str):
    torch.manual_seed(0)
    model = tiny_model(
        pattern, 4, n_layers=5, dim=256, n_heads=4, n_kv_heads=4, window=64, ffn_dim=512,
        linear={"n_heads": 4, "head_dim": 32, "expand_v": 2.0},
        dsa={"index_n_heads": 4, "index_head_dim": 32, "topk": 64},
    )  # fmt: skip
    return model.cuda().to(torch.bfloat16).eval()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_graph_and_compiled_steps_match_fp64(pattern):
    """Each engine's logits vs the fp64 reference forward, within verify-kernels' tolerance: FACTOR times the
    bf16 reference's own error (a fixed tolerance vs the eager engine would compare two bf16 errors)."""
    from torch._dynamo.utils import counters

    model = bf16_model(pattern)
    tokens = torch.randint(0, 97, (2, 160), device="cuda")
    with torch.no_grad(), backend.reference():
        exact = copy.deepcopy(model).double()(tokens)[:, 129:]
        floor = model(tokens)[:, 129:].float()
    logits = {}
    for name, options in {
        "graph-unfused": dict(cuda_graph=True, warmup=1, fuse=False),  # first: the Decoders below fuse in place
        "eager": dict(cuda_graph=False),
        "graph": dict(cuda_graph=True, warmup=1),
        "compile": dict(cuda_graph=True, warmup=2, compile=True),
    }.items():
        torch._dynamo.reset()
        counters.clear()
        decoder = Decoder(model, 2, 176, **options)
        out = [decoder.prefill(tokens[:, :130])[:, -1:]]
        for t in range(130, 160):  # past the 64-token window: ring slots are overwritten
            out.append(decoder.step(tokens[:, t])[0][:, None].clone())
        logits[name] = torch.cat(out, 1).float()
        if name == "compile":
            # no graph breaks, no recompilations
            assert counters["stats"]["unique_graphs"] == 1, (dict(counters["stats"]), dict(counters["graph_break"]))
    for name, got in logits.items():
        row = compare(pattern, name, got, floor, exact)
        assert row.ok, format_check(row)
