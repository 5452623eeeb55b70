"""Prefill and decode throughput of looped LMs at long context, next to the HBM roofline.

Regime. A decode step at batch 1-8 is memory-bound: it reads every layer's weights once per loop
(loop_count times per token), the head once, each sequence's KV cache (full attention) and reads and
writes each fixed-size recurrent state, while its FLOPs are ~2 per weight per sequence, far below the
H100's ~300 FLOP/byte ridge. So the ceiling of a step is bytes / measured copy bandwidth, and each
point reports the fraction of that roofline it reaches. Prefill at these lengths is compute-bound and
is reported as tokens/s.

Weights are random (bf16); decoding continues a real prefill of `ctx` random tokens, so caches hold
real values. An out-of-memory point is recorded as OOM, not raised: the OOM frontier is part of the table.

Engines (`ENGINES`), measured side by side per point: `graph` replays the eager decode step from a CUDA
graph; `compile` compiles the step with torch.compile first and replays that from the graph.
"""

from __future__ import annotations

import gc
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lt2.infer.decoder import Decoder
from lt2.model import LoopedLM
from lt2.model.costs import decode_step_bytes
from lt2.recipe import Recipe

ENGINES = {"graph": False, "compile": True}  # name -> Decoder(compile=...)


def parse_engines(text: str) -> list[str]:
    """'graph,compile' -> ['graph', 'compile']; an unknown name is refused with the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise ValueError(f"unknown decode engine(s) {unknown or text!r}; choose from {', '.join(ENGINES)}")
    return names


@dataclass
class ThroughputPoint:
    model: str
    engine: str  # a key of ENGINES
    batch: int
    ctx: int
    status: str  # ok | OOM
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None  # aggregate over the batch
    decode_ms_per_step: float | None = None
    roofline_tokens_per_s: float | None = None  # batch / (bytes of one step / copy bandwidth)
    roofline_fraction: float | None = None
    step_bytes: float | None = None
    peak_memory_gb: float | None = None
    capture_s: float | None = None  # warm-up (+ compilation) + graph capture, excluded from the timings


def parse_sizes(text: str) -> list[int]:
    """'1k,2k,32768' -> [1024, 2048, 32768]."""
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        scale = 1024 if item.endswith("k") else 1
        digits = item[:-1] if item.endswith("k") else item
        if not digits.isdigit() or int(digits) == 0:
            raise ValueError(f"bad size {item!r} in {text!r}; expected positive integers like 1k,8k,32768")
        sizes.append(int(digits) * scale)
    return sizes


def copy_bandwidth(device: torch.device, gigabytes: float = 2.0, repeats: int = 20) -> float:
    """Measured device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    n = int(gigabytes * 1e9 / 2)
    src = torch.randn(n, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    times.sort()
    return 2 * n * 2 / times[len(times) // 2]


def build_model(recipe: Recipe, device: torch.device, dtype: torch.dtype) -> LoopedLM:
    with torch.device("meta"):
        model = LoopedLM(recipe.model)
    model.to_empty(device=device)
    model.init_weights()
    return model.to(dtype).eval()


def _release() -> None:
    torch._dynamo.reset()  # compiled steps of earlier points: free them, and stay under the recompile limit
    gc.collect()
    torch.cuda.empty_cache()


@torch.no_grad()
def measure_point(
    model: LoopedLM,
    name: str,
    engine: str,
    batch: int,
    ctx: int,
    decode_steps: int,
    bandwidth: float,
    prefill_chunk: int,
) -> ThroughputPoint:
    device = model.embed.weight.device
    torch.cuda.reset_peak_memory_stats(device)
    decoder = None
    where = dict(model=name, engine=engine, batch=batch, ctx=ctx)
    try:
        decoder = Decoder(model, batch, ctx + decode_steps + 4, cuda_graph=True, warmup=2, compile=ENGINES[engine])
        tokens = torch.randint(0, model.args.vocab_size, (batch, ctx), device=device)
        # Untimed first pass over two chunks: kernels compile and autotune for these shapes (a fresh chunk and
        # one onto a filled cache); then the caches are emptied in place and the timed prefill starts over.
        for start in range(0, min(ctx, 2 * prefill_chunk), prefill_chunk):
            decoder.prefill(tokens[:, start : start + prefill_chunk], last_only=True)
        decoder.reset()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for start in range(0, ctx, prefill_chunk):  # chunked prefill bounds activation memory
            logits = decoder.prefill(tokens[:, start : start + prefill_chunk], last_only=True)
        torch.cuda.synchronize()
        prefill_s = time.perf_counter() - t0
        token = logits[:, -1].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(3):  # two warm-up steps (and the compilation), then the capture
            _, token = decoder.step(token)
        torch.cuda.synchronize()
        capture_s = time.perf_counter() - t0
        start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_ev.record()
        for _ in range(decode_steps):
            _, token = decoder.step(token)
        end_ev.record()
        end_ev.synchronize()
        step_s = start_ev.elapsed_time(end_ev) / 1e3 / decode_steps
    except torch.OutOfMemoryError:
        del decoder
        _release()
        return ThroughputPoint(**where, status="OOM")
    except Exception as err:  # a kernel failure is a result too: record it, measure the other points
        del decoder
        _release()
        return ThroughputPoint(**where, status=f"error: {type(err).__name__}: {str(err)[:200]}")
    step_bytes = decode_step_bytes(model, batch, ctx + decode_steps // 2)
    roofline = batch / (step_bytes / bandwidth)
    point = ThroughputPoint(
        **where,
        status="ok",
        prefill_tokens_per_s=batch * ctx / prefill_s,
        decode_tokens_per_s=batch / step_s,
        decode_ms_per_step=step_s * 1e3,
        roofline_tokens_per_s=roofline,
        roofline_fraction=(batch / step_s) / roofline,
        step_bytes=step_bytes,
        peak_memory_gb=torch.cuda.max_memory_allocated(device) / 2**30,
        capture_s=capture_s,
    )
    del decoder
    _release()
    return point


def run_throughput(
    recipes: list[Recipe],
    batches: list[int],
    contexts: list[int],
    decode_steps: int = 32,
    prefill_chunk: int = 8192,
    device: str = "cuda",
    engines: tuple[str, ...] = tuple(ENGINES),
) -> tuple[list[ThroughputPoint], dict]:
    """Measure every (recipe, engine, batch, ctx) point side by side in one process; returns points + facts."""
    if not torch.cuda.is_available():
        raise ValueError("lt2 bench throughput measures a CUDA device; none is visible")
    dev = torch.device(device)
    bandwidth = copy_bandwidth(dev)
    points = []
    for recipe in recipes:
        model = build_model(recipe, dev, torch.bfloat16)
        for engine, batch, ctx in itertools.product(engines, batches, contexts):
            point = measure_point(model, recipe.name, engine, batch, ctx, decode_steps, bandwidth, prefill_chunk)
            print(format_point(point), flush=True)
            print("POINT " + json.dumps(asdict(point)), flush=True)  # machine-readable, survives a kill
            points.append(point)
        del model
        _release()
    facts = {"copy_bandwidth_bytes_per_s": bandwidth, "gpu": torch.cuda.get_device_name(dev)}
    return points, facts


def format_point(p: ThroughputPoint) -> str:
    where = f"{p.model:>28} {p.engine:>7} B={p.batch:<2} ctx={p.ctx:>6}"
    if p.status != "ok":
        return f"{where}  {p.status}"
    return (
        f"{where}  prefill {p.prefill_tokens_per_s:>9.0f} tok/s  "
        f"decode {p.decode_tokens_per_s:>8.1f} tok/s ({p.decode_ms_per_step:6.2f} ms/step, "
        f"{100 * p.roofline_fraction:4.0f}% of {p.roofline_tokens_per_s:8.1f} roofline)  "
        f"peak {p.peak_memory_gb:5.1f} GB"
    )


def points_as_rows(points: list[ThroughputPoint]) -> list[dict]:
    return [asdict(p) for p in points]


def write_throughput(points: list[ThroughputPoint], facts: dict, out_csv: str | Path) -> None:
    """The CSV (one row per point) and the JSON record beside it (`<out>.json`: facts + points)."""
    import pandas as pd

    from lt2.files import atomic_write_text

    out = Path(out_csv)
    atomic_write_text(out, pd.DataFrame(points_as_rows(points)).to_csv(index=False))
    atomic_write_text(
        out.with_suffix(".json"), json.dumps({"facts": facts, "points": points_as_rows(points)}, indent=2) + "\n"
    )


def bench_throughput(
    recipes: list[Recipe],
    batches: list[int],
    contexts: list[int],
    decode_steps: int,
    prefill_chunk: int,
    engines: tuple[str, ...],
    out_csv: str | Path,
    inputs: list[str | Path],
) -> list[ThroughputPoint]:
    """`lt2 bench throughput`: measure inside the provenance record (opened before the first model is built),
    then write the CSV and JSON. `inputs` are the recipes' files; the sidecars' config is the resolved recipes
    and the sweep, their `extra` the measured device facts (GPU, copy bandwidth)."""
    from lt2.config import to_dict
    from lt2.report import provenance

    out = Path(out_csv)
    config = {
        "recipes": {r.name: to_dict(r.model) for r in recipes},
        "batch": batches,
        "ctx": contexts,
        "decode_steps": decode_steps,
        "prefill_chunk": prefill_chunk,
        "engines": list(engines),
    }
    with provenance.record([out, out.with_suffix(".json")], inputs=inputs, config=config) as rec:
        points, facts = run_throughput(recipes, batches, contexts, decode_steps, prefill_chunk, engines=engines)
        write_throughput(points, facts, out)
        rec.extra.update(facts)
    return points
