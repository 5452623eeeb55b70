"""Training engine on CUDA: the bf16 chunked loss against fp32 full logits (and its memory), every lever
(activation checkpointing none/full/selective, per-block compile) against eager on one batch, a real
bf16 FSDP + compile + selective-AC run that learns and exports, and `bench_train` reporting MFU.

Run on the device machine:  pytest -m gpu tests/gpu/test_train_gpu.py
"""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from lt2.recipe import load_recipe
from lt2.testing import assert_close
from lt2.train.loss import chunk_loss_and_grad, chunked_cross_entropy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SMALL = ["model.vocab_size=8192", "model.dim=256", "model.n_layers=4", "model.loop_count=2", "model.n_heads=4",
         "model.ffn_dim=704", "model.max_seqlen=1024", "data.seq_len=1024", "data.batch_size=4",
         "train.optim.warmup_steps=5", "train.steps=40"]  # fmt: skip


@pytest.fixture(scope="module")
def dist_info():
    from lt2.train.distributed import destroy_distributed, init_distributed

    info = init_distributed()
    yield info
    destroy_distributed()


def test_chunked_loss_bf16_matches_fp32_and_saves_memory():
    g = torch.Generator(device="cuda").manual_seed(0)
    n, c, v = 8192, 1024, 32768
    h = (torch.randn(n, c, device="cuda", generator=g) * 0.5).bfloat16().requires_grad_()
    w = (torch.randn(v, c, device="cuda", generator=g) * 0.02).bfloat16().requires_grad_()
    t = torch.randint(0, v, (n,), device="cuda", generator=g)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    ref = F.cross_entropy((h @ w.t()).float(), t)  # the unfused head: full fp32 logits
    ref_dh, ref_dw = torch.autograd.grad(ref, (h, w))
    full_peak = torch.cuda.max_memory_allocated() - base
    torch.cuda.reset_peak_memory_stats()
    got = chunked_cross_entropy(h, w, t, 2048)
    dh, dw = torch.autograd.grad(got, (h, w))
    chunk_peak = torch.cuda.max_memory_allocated() - base
    assert_close("loss", got, ref, rtol=2e-3, atol=2e-3)
    assert_close("dh", dh.float(), ref_dh.float(), rtol=2e-2)
    assert_close("dW", dw.float(), ref_dw.float(), rtol=2e-2)
    assert chunk_peak < 0.5 * full_peak, (chunk_peak / 2**30, full_peak / 2**30)
    compiled = chunked_cross_entropy(h, w, t, 2048, torch.compile(chunk_loss_and_grad))
    assert_close("compiled", compiled, got, rtol=1e-3, atol=1e-3)


def _loss_and_grad_norm(recipe, info, tokens):
    from lt2.train.loop import build_model

    model = build_model(recipe, info)
    loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return loss.item(), norm.item()


def test_levers_agree_with_eager(dist_info):
    tokens = torch.randint(0, 8192, (4, 1025), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    base = load_recipe(None, [*SMALL, "train.compile=false"])
    ref = _loss_and_grad_norm(base, dist_info, tokens)
    for ac in ("none", "full", "selective"):
        for compile_ in (False, True):
            recipe = load_recipe(None, [*SMALL, f"train.compile={compile_}", f"train.activation_checkpointing={ac}"])
            loss, norm = _loss_and_grad_norm(recipe, dist_info, tokens)
            assert loss == pytest.approx(ref[0], rel=5e-3), (ac, compile_)
            assert norm == pytest.approx(ref[1], rel=3e-2), (ac, compile_)


def test_bf16_run_learns_and_exports(dist_info, tmp_path):
    from lt2.data.tokenizer import train_bpe
    from lt2.model.looped import LoopedLM
    from lt2.train.loop import Trainer

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    (tmp_path / "chunks").mkdir()
    for c in range(2):
        with open(tmp_path / "chunks" / f"toy.chunk.{c:02d}.jsonl", "w") as f:
            for _ in range(300):
                f.write(json.dumps({"text": " ".join(rng.choice(words[:150]) for _ in range(200))}) + "\n")
    train_bpe([tmp_path / "chunks"], 1024, tmp_path / "tok")
    data = [f"data.train_dir={tmp_path / 'chunks'}", f"data.tokenizer={tmp_path / 'tok'}", "data.doc_mask=false"]
    recipe = load_recipe(None, [*SMALL, *data, "train.activation_checkpointing=selective", "train.log_every=1",
                                "train.checkpoint.every=20", "train.optim.lr=2e-3"])  # fmt: skip
    trainer = Trainer(recipe, tmp_path / "run", dist_info)
    try:
        result = trainer.fit(tmp_path / "out")
    finally:
        trainer.close()
    assert result.status == "completed"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert all(r["mfu"] is not None and r["peak_mem_gib"] > 0 for r in records if "loss" in r)
    model = LoopedLM.from_pretrained(tmp_path / "out", device="cuda")
    assert model.embed.weight.dtype == torch.float32  # master weights, not the bf16 compute copies


def test_bench_train_reports_mfu(dist_info):
    from lt2.bench.train import bench_train

    result = bench_train(load_recipe(None, SMALL), dist_info, steps=5, warmup=2)
    assert result.status == "ok"
    assert result.mfu is not None and 0.0 < result.mfu < 1.0
    assert result.peak_mem_gib > 0 and result.tokens_per_s > 0
