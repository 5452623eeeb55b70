"""`lt2 bench train`: training throughput and MFU of a recipe on random tokens.

Regime. A training step at a 4096-token context is compute-bound: its matmuls have B * T >= 8192 rows, far
above the ~300 FLOP/byte ridge of an H100, so the ceiling is the device's dense bf16 peak and MFU (analytic
train FLOPs per token from lt2.model.costs, times tokens/s, over that peak) says how close a step gets.
Attention at 4096 adds FLOPs that are in the count; activation-checkpoint recomputation is not (MFU, not HFU).

Method. The run's own pieces (build_model: AC -> compile -> FSDP, AdamW, the chunked loss, train_step) on
uniformly random tokens, which cost the same FLOPs as text; the data loader is left out (in training it
packs batches in a background thread). The first `warmup` steps (compilation, autotuning, allocator growth)
are timed separately and excluded; the record gives the median step time of the rest. Out of memory is a
result (status "OOM"), not a crash: it bounds the micro-batch.

    lt2 bench train config/recipes/600M/looped_full.yaml data.batch_size=2 --steps 200 \\
        --out results/bench/train_looped_full.json
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lt2.config import to_dict
from lt2.data.loader import Batch
from lt2.recipe import Recipe, validate_recipe
from lt2.train.distributed import DistInfo
from lt2.train.metrics import peak_flops, train_flops_per_token


@dataclass
class TrainBench:
    recipe: str
    status: str  # ok | OOM
    device: str
    world_size: int
    dtype: str
    seq_len: int
    batch_size: int  # sequences per rank per micro-step
    grad_accum: int
    compile: bool
    activation_checkpointing: str
    loss_chunk: int
    steps: int  # timed steps (after warm-up)
    warmup_steps: int
    warmup_s: float | None  # wall time of the warm-up steps (compilation included)
    step_time_s: float | None  # median over the timed steps
    tokens_per_s: float | None  # all ranks
    tokens_per_s_per_device: float | None
    train_flops_per_token: float
    achieved_tflops_per_device: float | None
    peak_tflops: float | None  # dense peak of the device for `dtype` (None: CPU or unknown GPU)
    mfu: float | None
    peak_mem_gib: float | None  # CUDA allocator peak
    reserved_mem_gib: float | None
    final_loss: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_token_step(recipe: Recipe, info: DistInfo) -> Callable[[], torch.Tensor]:
    """The run's own pieces (build_model: AC -> compile -> FSDP, AdamW, the schedule, train_step), built now;
    each call of the returned closure is one optimizer step on fresh uniformly random tokens (`grad_accum`
    micro-batches of [batch_size, seq_len]) and returns its mean loss, on device, unsynchronised.

    >>> step = random_token_step(recipe, info)
    >>> loss = step()  # collective over ranks
    """
    from lt2.train.loop import build_model, seed_everything, train_step
    from lt2.train.optim import build_optimizer, build_scheduler

    seed_everything(recipe.train.seed + info.rank)
    data, train, device = recipe.data, recipe.train, info.device
    generator = torch.Generator(device=device).manual_seed(train.seed + info.rank)

    def random_batch() -> Batch:
        tokens = torch.randint(0, recipe.model.vocab_size, (data.batch_size, data.seq_len + 1), device=device,
                               generator=generator)  # fmt: skip
        return Batch(tokens[:, :-1], tokens[:, 1:], None, 0)

    model = build_model(recipe, info)
    optimizer = build_optimizer(model, train.optim, device)
    scheduler = build_scheduler(optimizer, train.optim, train.steps)

    def step() -> torch.Tensor:
        micro = [random_batch() for _ in range(train.grad_accum)]
        return train_step(model, optimizer, scheduler, micro, recipe, device)[0]

    return step


def bench_train(recipe: Recipe, info: DistInfo, steps: int, warmup: int) -> TrainBench:
    """Time `warmup + steps` optimizer steps of `recipe` on random tokens (collective over ranks)."""
    data, train, device = recipe.data, recipe.train, info.device
    flops = train_flops_per_token(recipe.model, data.seq_len)
    peak = peak_flops(device, train.dtype)
    tokens_per_step = data.batch_size * data.seq_len * train.grad_accum * info.world_size
    record = dict(
        recipe=recipe.name,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        world_size=info.world_size,
        dtype=train.dtype,
        seq_len=data.seq_len,
        batch_size=data.batch_size,
        grad_accum=train.grad_accum,
        compile=train.compile,
        activation_checkpointing=train.activation_checkpointing,
        loss_chunk=train.loss_chunk,
        steps=steps,
        warmup_steps=warmup,
        train_flops_per_token=flops,
        peak_tflops=peak / 1e12 if peak else None,
    )
    try:
        step = random_token_step(recipe, info)
        times = []
        _sync(device)
        t0 = time.perf_counter()
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                warmup_s = time.perf_counter() - t0
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            loss = step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError:
        return TrainBench(**record, status="OOM", **dict.fromkeys(_MEASURED))
    step_time = statistics.median(times)
    tps = tokens_per_step / step_time
    per_device = tps / info.world_size
    cuda = device.type == "cuda"
    return TrainBench(
        **record,
        status="ok",
        warmup_s=warmup_s,
        step_time_s=step_time,
        tokens_per_s=tps,
        tokens_per_s_per_device=per_device,
        achieved_tflops_per_device=per_device * flops / 1e12,
        mfu=per_device * flops / peak if peak else None,
        peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        reserved_mem_gib=torch.cuda.max_memory_reserved(device) / 2**30 if cuda else None,
        final_loss=loss.item(),
    )


_MEASURED = (
    "warmup_s",
    "step_time_s",
    "tokens_per_s",
    "tokens_per_s_per_device",
    "achieved_tflops_per_device",
    "mfu",
    "peak_mem_gib",
    "reserved_mem_gib",
    "final_loss",
)


def format_table(b: TrainBench) -> str:
    """The record as a two-column table for people (the JSON is the artefact)."""

    def fmt(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    rows = [
        ("recipe", b.recipe),
        ("device", f"{b.device} x {b.world_size}"),
        ("status", b.status),
        ("micro-batch", f"{b.batch_size} x {b.seq_len} tokens, grad_accum {b.grad_accum}, {b.dtype}"),
        ("levers", f"compile={b.compile} ac={b.activation_checkpointing} loss_chunk={b.loss_chunk}"),
        ("step time (median)", f"{fmt(b.step_time_s)} s over {b.steps} steps (warm-up {fmt(b.warmup_s)} s)"),
        ("tokens/s", f"{fmt(b.tokens_per_s)} ({fmt(b.tokens_per_s_per_device)} per device)"),
        ("TFLOP/s per device", f"{fmt(b.achieved_tflops_per_device)} of peak {fmt(b.peak_tflops)}"),
        ("MFU", fmt(b.mfu)),
        ("peak memory GiB", f"{fmt(b.peak_mem_gib)} allocated, {fmt(b.reserved_mem_gib)} reserved"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_record(b: TrainBench, out: str | Path) -> None:
    """The JSON record (atomically); its provenance sidecar comes from the record `run_bench_train` opened."""
    from lt2.files import atomic_write_text

    atomic_write_text(out, json.dumps(asdict(b), indent=2, sort_keys=True) + "\n")


def run_bench_train(
    recipe: Recipe, steps: int, warmup: int, out: str | Path | None, inputs: list[str | Path] = ()
) -> TrainBench:
    """`lt2 bench train`: start the process group, bench, print the table and write the record (rank 0).

    The provenance record of `out` opens before the process group starts: the sidecar's config is the
    resolved recipe, its inputs the recipe's files (`inputs`: the recipe and its bases) hashed then.
    """
    from lt2.report import provenance
    from lt2.train.distributed import destroy_distributed, init_distributed

    validate_recipe(recipe)  # a Recipe built in code was not checked by load_recipe
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    recording = out is not None and provenance.is_main_process()
    with provenance.record_if(
        recording, [out] if out is not None else [], inputs=inputs, config=to_dict(recipe)
    ) as rec:
        info = init_distributed()
        try:
            result = bench_train(recipe, info, steps, warmup)
        finally:
            destroy_distributed()
        if info.is_main:
            print(format_table(result))
            if out is not None:
                write_record(result, out)
                rec.extra["device"] = result.device
    return result
