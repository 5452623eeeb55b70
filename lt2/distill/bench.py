"""Decode cost of a model folder, for putting a distilled student next to its teacher.

Decoding one token of a looped model reads every layer's weights `loop_count` times and each (loop, layer)
cache once; at long contexts the teacher's KV caches (one per loop and layer) dominate, and that is what
replacing attention layers by fixed-size recurrent states removes. This records both views at a context:

- analytic: decode cache bytes per sequence, the bytes one decode step must move (the HBM roofline's
  numerator, lt2.model.costs.decode_step_bytes) and forward FLOPs per token;
- measured: tokens/s of eager one-token decode steps after a prefill of `ctx` tokens (batch `batch`), the
  prefill and one warm-up step excluded from the timing. On a CPU this is a sanity number; the GPU decode
  engines are compared by `lt2 bench throughput`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from lt2.model.costs import decode_step_bytes, model_info
from lt2.model.looped import LoopedLM


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def decode_cost(model_dir: str | Path, ctx: int, batch: int = 1, steps: int = 16, device: str = "cpu") -> dict:
    """The record `lt2 distill bench` writes (module docstring); ctx, batch, steps >= 1."""
    for name, value in {"ctx": ctx, "batch": batch, "steps": steps}.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    dev = torch.device(device)
    model = LoopedLM.from_pretrained(model_dir, device=dev).eval()
    args = model.args
    if dev.type == "cuda":
        model = model.to(torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab_size, (batch, ctx + steps + 1), generator=gen).to(dev)
    _, state = model.prefill(tokens[:, :ctx], max_len=ctx + steps + 1, last_only=True)
    model.step(tokens[:, ctx], state)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    for i in range(steps):
        model.step(tokens[:, ctx + 1 + i], state)
    _sync(dev)
    elapsed = time.perf_counter() - start
    info = model_info(args, ctx)
    return {
        "model": str(model_dir),
        "pattern": args.pattern,
        "params": info.params,
        "mixer_map": info.mixer_map,
        "ctx": ctx,
        "batch": batch,
        "steps": steps,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "cache_bytes": info.cache_bytes(ctx),
        "decode_step_bytes": decode_step_bytes(model, batch, ctx),
        "forward_flops_per_token": info.forward_flops_per_token,
        "decode_tokens_per_s": batch * steps / elapsed,
    }
