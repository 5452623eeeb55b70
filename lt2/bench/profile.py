"""`lt2 bench profile`: where one decode or training step spends its time, by kernel class.

Regime. A decode step at batch 8 is memory-bound and made of thousands of small kernels (n_layers x
loop_count mixers, each with its GEMV-shaped projections, norms, gates and residuals), so its time splits
into GEMVs below the copy bandwidth, launch-sized elementwise glue and attention over the cache. A training
step is compute-bound in its matmuls but loses time to unfused glue and to the host (idle device). Both
questions are answered by one table: per kernel class, kernels and milliseconds per step, as shares of the
kernel time and of the step.

Method. decode: random weights (bf16 on CUDA, fp32 on CPU), a prefill of `ctx` random tokens at `batch`,
`warmup` steps and the graph capture, then (a) `steps` timed replays of the CUDA graph give the step time
and (b) `steps` eager steps under torch.profiler give the kernels: launched eagerly, each kernel is one
launch the profiler names (whether it traces the kernels inside a graph replay depends on the CUDA and
Kineto versions). train: the run's own pieces on random tokens (lt2.bench.train.random_token_step),
`warmup` steps (compilation), then `steps` timed steps, then `steps` profiled ones.

Idle share = 1 - kernel time / step time; kernels of every stream are summed, so overlapping streams
(FSDP's collectives at world size > 1) can push it below zero. On the CPU the step time is the profiled
wall time instead: there the profiler's overhead lands inside the ops it times, so only the profiled wall
time bounds them (CPU runs check the tool; they measure nothing of a GPU's).

What counts as a kernel: on CUDA every device event (kernels, memcpy, memset); on CPU every outermost
aten op (one not called from inside another aten op), timed with its children: leaf ops would miss
aten::mm, whose children are resolve_conj views.

    lt2 bench profile decode config/recipes/1B/looped_hybrid_gdn_4to1.yaml --batch 8 --ctx 8k \\
        --out results/paper/bench/profile/decode_looped_hybrid_gdn_4to1.json
    lt2 bench profile train config/recipes/600M/looped_pure_gdn.yaml data.batch_size=2 --steps 5 \\
        --out results/paper/bench/profile/train_looped_pure_gdn.json
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from lt2.recipe import Recipe

# class -> what it holds; the order is the table's.
CLASSES = {
    "matmul": "cuBLAS / cutlass / nvjet GEMM and GEMV, split-K reduce; aten mm/addmm/bmm/linear/einsum on CPU",
    "attention": "flash / fmha / SDPA / flex (Inductor templates), our split-KV decode and DSA sparse attention",
    "linear_mixer": "fla chunk / fused_recurrent / WY / short-conv kernels, our fused GDN decode, tilelang",
    "sparse_selection": "top-k of the DSA indexer and NSA blocks, DSA's selected-probability kernel",
    "norm": "RMS / layer / l2 norms, incl. Inductor kernels with an rsqrt (our models take one only there)",
    "elementwise": "at::native elementwise / vectorized kernels, Inductor pointwise (triton_poi), other aten ops",
    "reduction": "reduce_kernel, softmax / log-softmax / NLL, scans, Inductor reductions (triton_red / per)",
    "copy": "Memcpy / Memset, copy and cast kernels, fill, cat, index / gather / scatter, embedding",
    "optimizer": "multi_tensor_apply (fused AdamW, foreach grad-norm clipping), aten _foreach_* on CPU",
    "communication": "NCCL collectives (FSDP all-gather / reduce-scatter), c10d ops on CPU",
    "other": "anything else, and on CPU views and allocations (no kernel of their own)",
}

# (regex searched in the name, class): the first match wins, so the specific rules come first.
_VIEW_OPS = (  # CPU ops that move no data: views, metadata, allocations
    "view|_unsafe_view|reshape|_reshape_alias|as_strided|t|transpose|permute|unsqueeze|squeeze|expand|expand_as|"
    "slice|select|split|split_with_sizes|chunk|narrow|unbind|flatten|unflatten|view_as|detach|alias|lift_fresh|"
    "resolve_conj|resolve_neg|result_type|empty|empty_strided|empty_like|new_empty|set_"
)
# fmt: off
RULES: list[tuple[str, str]] = [
    (r"nccl|^c10d::|record_param_comms",                                                  "communication"),
    # before norm and elementwise: the grad-norm kernels say Norm, the foreach ops are pointwise
    (r"multi_tensor_apply|FusedAdam|lpnorm_cleanup|^aten::_foreach_|^aten::_fused_adam",  "optimizer"),
    # Inductor's kernels say their kind in the prefix; its templates are matmuls or flex attention
    (r"^triton_tem_fused_(mm|addmm|bmm)",                                                 "matmul"),
    (r"^triton_tem_",                                                                     "attention"),
    (r"(?i)rsqrt|layer_?norm|rms_?norm|l2norm|group_?norm",                               "norm"),
    (r"^triton_poi_",                                                                     "elementwise"),
    (r"^triton_(red|per)_",                                                               "reduction"),
    (r"(?i)topk|radixFindKthValues|selected_probs_kernel",                                "sparse_selection"),
    (r"^chunk_|fused_recurrent|fused_chunk|_fwd_kernel_h|prepare_wy_repr|recompute_w_u|solve_tril|merge_16x16"
     r"|causal_conv1d|gdn_gate|kda_gate|fused_gdn_decode|^(main|kernel)_kernel$|_tl_kernel", "linear_mixer"),
    # the WY solve of the delta rules' chunked CPU reference (fla's solve_tril on CUDA)
    (r"^aten::linalg_solve_triangular$",                                                  "linear_mixer"),
    # before matmul: the memory-efficient SDPA kernels are cutlass templates (fmha_cutlassF_...)
    (r"(?i)flash|fmha|attention|_attn_|sdpa|flex|parallel_nsa",                          "attention"),
    (r"(?i)gemm|gemv|splitKreduce|nvjet|cutlass|cublas|xmma"
     r"|^aten::(mm|addmm|bmm|baddbmm|linear|matmul|einsum|addmv|mv|dot|_scaled_mm)$",     "matmul"),
    # before elementwise: copies, casts and index kernels are elementwise_kernel instances
    (r"^Memcpy|^Memset|copy_kernel|CatArray|index_elementwise|indexSelect|indexFunc|index_put|scatter|gather"
     r"|embedding|FillFunctor|^aten::(copy_|_to_copy|to|clone|contiguous|cat|_chunk_cat|stack|index"
     r"|index_select|index_put_|index_copy_|masked_scatter|fill_|zero_|zeros|zeros_like|ones|full|arange)$", "copy"),
    (r"(?i)reduce_kernel|softmax|logsumexp|nll_loss|cross_entropy|scan|cumsum|argmax"
     r"|^aten::(sum|mean|amax|amin|max|min|norm|linalg_vector_norm|var|std|any|all|prod)$", "reduction"),
    (rf"^aten::({_VIEW_OPS})$",                                                           "other"),
    # what is left of aten on CPU is pointwise (mul, add, silu, exp, where, ...)
    (r"elementwise|vectorized|^aten::",                                                   "elementwise"),
]
# fmt: on
_COMPILED = [(re.compile(pattern), cls) for pattern, cls in RULES]
assert {cls for _, cls in RULES} <= set(CLASSES)

TOP = 15  # individual kernels listed
PREFILL_CHUNK = 8192  # prefill in chunks of this many tokens: bounds activation memory at long context


def kernel_class(name: str) -> str:
    """The class (a key of CLASSES) of a CUDA kernel or CPU aten op name, by the first matching rule of RULES.

    >>> kernel_class("void gemv2T_kernel_val<int, int, __nv_bfloat16, ...>(...)")
    'matmul'
    >>> kernel_class("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0")
    'norm'
    """
    for pattern, cls in _COMPILED:
        if pattern.search(name):
            return cls
    return "other"


def _outermost_aten(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def step_kernels(events: Iterable, device: torch.device) -> list[tuple[str, float]]:
    """(name, microseconds) of every kernel in profiler `events`: device events on CUDA, outermost aten ops on
    CPU (see the module docstring)."""
    if device.type == "cuda":
        return [(e.name, e.time_range.elapsed_us()) for e in events if e.device_type == DeviceType.CUDA]
    cpu_ops = (e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::"))
    return [(e.name, e.time_range.elapsed_us()) for e in cpu_ops if _outermost_aten(e)]


@dataclass
class ClassRow:
    cls: str  # a key of CLASSES
    kernels_per_step: float
    ms_per_step: float
    share_of_kernel_time: float
    share_of_step: float


@dataclass
class KernelRow:
    name: str  # as the profiler names it (CUDA: the demangled kernel, templates included)
    cls: str
    calls_per_step: float
    ms_per_step: float
    share_of_kernel_time: float


@dataclass
class StepProfile:
    mode: str  # decode | train
    recipe: str
    device: str  # GPU name or "cpu"
    engine: str  # decode: graph | compile (eager steps on CPU); train: compile | eager
    torch: str
    kernel_source: str  # what a "kernel" is on this device
    shape: dict  # decode: batch, ctx; train: batch_size, seq_len, grad_accum
    steps: int
    warmup: int
    step_ms: float  # the step time that shares and idle refer to; how it was taken: step_timing
    step_timing: str
    profiled_step_ms: float  # wall time of a profiled step (eager, with the profiler's overhead)
    kernel_ms: float  # summed kernel time per step
    idle_share: float  # 1 - kernel_ms / step_ms
    kernels_per_step: float
    classes: list[ClassRow] = field(default_factory=list)
    top: list[KernelRow] = field(default_factory=list)


def summarise(kernels: list[tuple[str, float]], steps: int, step_ms: float) -> tuple[list[ClassRow], list[KernelRow]]:
    """Per-class rows (every class of CLASSES, in order) and the TOP kernels by time, per step."""
    if not kernels:  # e.g. CUPTI unavailable: a table of zeros would look like a result
        raise RuntimeError("the profiler recorded no kernels; check that torch.profiler works on this device")
    calls: dict[str, int] = defaultdict(int)
    total_us: dict[str, float] = defaultdict(float)
    for name, us in kernels:
        calls[name] += 1
        total_us[name] += us
    ms = {name: us / 1e3 / steps for name, us in total_us.items()}  # per step
    kernel_ms = sum(ms.values())
    class_calls: dict[str, int] = dict.fromkeys(CLASSES, 0)
    class_ms: dict[str, float] = dict.fromkeys(CLASSES, 0.0)
    for name in calls:
        cls = kernel_class(name)
        class_calls[cls] += calls[name]
        class_ms[cls] += ms[name]
    classes = [
        ClassRow(cls, class_calls[cls] / steps, class_ms[cls], class_ms[cls] / kernel_ms, class_ms[cls] / step_ms)
        for cls in CLASSES
    ]
    ranked = sorted(ms, key=ms.get, reverse=True)[:TOP]
    top = [KernelRow(n, kernel_class(n), calls[n] / steps, ms[n], ms[n] / kernel_ms) for n in ranked]
    return classes, top


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(step: Callable[[], object], steps: int, device: torch.device) -> float:
    """Milliseconds per call of `step`, over `steps` calls."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3 / steps


def profile_steps(
    step: Callable[[], object], steps: int, device: torch.device, trace: str | Path | None = None
) -> tuple[list[tuple[str, float]], float]:
    """Run `steps` calls of `step` under torch.profiler: (kernels as step_kernels gives them, wall ms per step).
    `trace`: also export the chrome trace there."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=activities, record_shapes=False) as prof:
        wall_ms = _time_steps(step, steps, device)
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    return step_kernels(prof.events(), device), wall_ms


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _source(device: torch.device) -> str:
    return "CUDA device events" if device.type == "cuda" else "outermost aten ops (CPU)"


def _result(mode: str, recipe: Recipe, device: torch.device, engine: str, shape: dict, steps: int, warmup: int,
            timed_ms: float | None, kernels: list[tuple[str, float]], profiled_ms: float) -> StepProfile:  # fmt: skip
    """The record; `timed_ms` is None on the CPU, where the profiled wall time is the step time."""
    if timed_ms is None:
        step_ms, timing = profiled_ms, "wall time of the profiled steps (CPU)"
    else:
        step_ms, timing = timed_ms, "graph replay" if mode == "decode" else "wall time, no profiler"
    classes, top = summarise(kernels, steps, step_ms)
    kernel_ms = sum(row.ms_per_step for row in classes)
    return StepProfile(
        mode=mode, recipe=recipe.name, device=_device_name(device), engine=engine, torch=torch.__version__,
        kernel_source=_source(device), shape=shape, steps=steps, warmup=warmup, step_ms=step_ms, step_timing=timing,
        profiled_step_ms=profiled_ms, kernel_ms=kernel_ms, idle_share=1 - kernel_ms / step_ms,
        kernels_per_step=len(kernels) / steps, classes=classes, top=top,
    )  # fmt: skip


@torch.no_grad()
def profile_decode(
    recipe: Recipe, batch: int, ctx: int, steps: int, warmup: int, engine: str = "graph", trace: str | None = None
) -> StepProfile:
    """Profile one-token decode steps of `recipe` at (batch, ctx) on CUDA if present, else on the CPU."""
    from lt2.bench.throughput import ENGINES, build_model
    from lt2.infer.decoder import Decoder

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = build_model(recipe, device, torch.bfloat16 if cuda else torch.float32)
    max_len = ctx + warmup + 1 + 2 * steps  # warm-up, capture, timed and profiled steps
    decoder = Decoder(model, batch, max_len, cuda_graph=cuda, warmup=warmup, compile=ENGINES[engine])
    tokens = torch.randint(0, recipe.model.vocab_size, (batch, ctx), device=device)
    for start in range(0, ctx, PREFILL_CHUNK):
        logits = decoder.prefill(tokens[:, start : start + PREFILL_CHUNK], last_only=True)
    token = logits[:, -1].argmax(-1)

    def step() -> None:
        nonlocal token
        token = decoder.step(token)[1]

    for _ in range(warmup + 1):  # the step after the warm-up captures the graph (CUDA)
        step()
    timed_ms = _time_steps(step, steps, device) if cuda else None
    decoder.cuda_graph = False  # the same step, launched eagerly: the profiler sees each kernel by name
    kernels, profiled_ms = profile_steps(step, steps, device, trace)
    shape = {"batch": batch, "ctx": ctx}
    engine_name = engine if cuda else f"{engine} (eager on CPU)"
    return _result("decode", recipe, device, engine_name, shape, steps, warmup, timed_ms, kernels, profiled_ms)


def profile_train(recipe: Recipe, steps: int, warmup: int, trace: str | None = None) -> StepProfile:
    """Profile optimizer steps of `recipe` on random tokens (this rank's view; collective over ranks)."""
    from lt2.bench.train import random_token_step
    from lt2.train.distributed import destroy_distributed, init_distributed

    info = init_distributed()
    try:
        step = random_token_step(recipe, info)
        for _ in range(warmup):
            step()
        timed_ms = _time_steps(step, steps, info.device) if info.device.type == "cuda" else None
        kernels, profiled_ms = profile_steps(step, steps, info.device, trace if info.is_main else None)
    finally:
        destroy_distributed()
    data = recipe.data
    shape = {"batch_size": data.batch_size, "seq_len": data.seq_len, "grad_accum": recipe.train.grad_accum,
             "world_size": info.world_size}  # fmt: skip
    engine = "compile" if recipe.train.compile else "eager"
    return _result("train", recipe, info.device, engine, shape, steps, warmup, timed_ms, kernels, profiled_ms)


def _short(name: str, width: int = 90) -> str:
    """A CUDA kernel name without `void ` and its argument list, cut to `width` (the JSON keeps it whole)."""
    name = name.removeprefix("void ")
    name = name.split("(", 1)[0] if not name.startswith("aten::") else name
    return name if len(name) <= width else name[: width - 3] + "..."


def format_profile(p: StepProfile) -> str:
    """The class table, the totals and the top kernels, for people (the JSON is the artefact)."""
    shape = " ".join(f"{k}={v}" for k, v in p.shape.items())
    lines = [
        f"{p.mode} step of {p.recipe} on {p.device} ({p.engine}, torch {p.torch}), {shape}, {p.steps} steps",
        f"{'class':<17}{'kernels/step':>13}{'ms/step':>10}{'% kernel':>10}{'% step':>8}",
    ]
    for r in p.classes:
        lines.append(f"{r.cls:<17}{r.kernels_per_step:>13.1f}{r.ms_per_step:>10.3f}"
                     f"{100 * r.share_of_kernel_time:>10.1f}{100 * r.share_of_step:>8.1f}")  # fmt: skip
    lines += [
        f"{'total':<17}{p.kernels_per_step:>13.1f}{p.kernel_ms:>10.3f}{100.0:>10.1f}{100 * (1 - p.idle_share):>8.1f}",
        f"step {p.step_ms:.3f} ms ({p.step_timing}; profiled {p.profiled_step_ms:.3f} ms), "
        f"kernels {p.kernel_ms:.3f} ms, idle {100 * p.idle_share:.1f}%, {p.kernels_per_step:.0f} kernels per step "
        f"({p.kernel_source})",
        f"top {len(p.top)} kernels:",
    ]
    for k in p.top:
        lines.append(f"  {k.ms_per_step:8.3f} ms {100 * k.share_of_kernel_time:5.1f}% {k.calls_per_step:7.1f}x "
                     f"{k.cls:<16} {_short(k.name)}")  # fmt: skip
    return "\n".join(lines)


def run_profile(
    mode: str,
    recipe: Recipe,
    steps: int,
    warmup: int,
    out: str | Path | None,
    inputs: list[str | Path] = (),
    batch: int = 8,
    ctx: int = 8192,
    engine: str = "graph",
    trace: str | Path | None = None,
) -> StepProfile:
    """`lt2 bench profile {decode,train}`: profile inside the provenance record of `out` (and `trace`), print
    the table and write the JSON record (rank 0). The sidecar's config is the resolved recipe and the settings,
    its `extra` the device, torch version and engine."""
    from lt2.bench.throughput import ENGINES
    from lt2.config import to_dict
    from lt2.files import atomic_write_text
    from lt2.recipe import validate_recipe
    from lt2.report import provenance

    validate_recipe(recipe)
    if mode not in ("decode", "train"):
        raise ValueError(f"unknown profile mode {mode!r}; choose from decode, train")
    if steps < 1 or warmup < 1:
        raise ValueError(f"--steps and --warmup must be >= 1, got {steps} and {warmup}")
    if engine not in ENGINES:
        raise ValueError(f"unknown decode engine {engine!r}; choose from {', '.join(ENGINES)}")
    settings = {"mode": mode, "steps": steps, "warmup": warmup}
    if mode == "decode":
        settings.update(batch=batch, ctx=ctx, engine=engine)
    outputs = [p for p in (out, trace) if p is not None]
    recording = out is not None and provenance.is_main_process()
    config = {"recipe": to_dict(recipe), "profile": settings}
    with provenance.record_if(recording, outputs, inputs=inputs, config=config) as rec:
        if mode == "decode":
            result = profile_decode(recipe, batch, ctx, steps, warmup, engine, trace)
        else:
            result = profile_train(recipe, steps, warmup, trace)
        if provenance.is_main_process():
            print(format_profile(result))
        if rec is not None:
            atomic_write_text(out, json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
            rec.extra.update(device=result.device, torch=result.torch, engine=result.engine)
    return result
