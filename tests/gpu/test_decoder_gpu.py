"""The decode engines on a CUDA device, bf16, at a small 1.3B-like layout (hybrids of every fast decode path).

For full attention (split-KV kernel), window (ring kernel), GDN (fused step) and DSA, in one 4:1 hybrid and
a GDN+DSA hybrid: the CUDA-graph decoder and the torch.compile'd + graph decoder give the eager decoder's
logits, step after step, and prefill + steps give the full forward.

Run: pytest -m gpu tests/gpu/test_decoder_gpu.py
"""

from __future__ import annotations

import pytest
import torch

from lt2.infer.decoder import Decoder
from lt2.testing import assert_close, tiny_model

pytest.importorskip("triton", reason="the fast decode paths need triton")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

RTOL = 2e-2  # bf16 end to end: the engines reorder bf16 roundings, not the maths

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
def test_graph_and_compiled_steps_equal_eager(pattern):
    model = bf16_model(pattern)
    tokens = torch.randint(0, 97, (2, 160), device="cuda")
    decoders = {
        "eager": Decoder(model, 2, 176, cuda_graph=False),
        "graph": Decoder(model, 2, 176, cuda_graph=True, warmup=1),
        "compile": Decoder(model, 2, 176, cuda_graph=True, warmup=2, compile=True),
    }
    logits = {}
    for name, decoder in decoders.items():
        out = [decoder.prefill(tokens[:, :130])]
        for t in range(130, 160):  # past the 64-token window: ring slots are overwritten
            out.append(decoder.step(tokens[:, t])[0][:, None].clone())
        logits[name] = torch.cat(out, 1).float()
    for name in ("graph", "compile"):
        assert_close(f"{pattern}: {name} vs eager", logits[name], logits["eager"], rtol=RTOL)
    with torch.no_grad():
        assert_close(f"{pattern}: decode vs forward", logits["eager"], model(tokens).float(), rtol=RTOL)
