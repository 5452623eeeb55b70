"""`lt2 verify-kernels`: the CUDA fast paths against the pure-PyTorch references at realistic shapes.

For every mixer and two hybrids, on a 2-layer, 2-loop model with the 600M recipe's mixer settings
(vocabulary cut to 8192), B x T tokens (default 2 x 2048). Three copies of one set of weights
(bf16-rounded, so weights are no source of difference):

    fast    the fast paths (Triton / fla / tilelang kernels), bf16: what training and decoding run;
    ref16   the pure-PyTorch references, bf16 (they accumulate in fp32 inside, as the kernels do);
    ref64   the same references in fp64: the exact answer for these weights and tokens.

Every check measures the fast path's error against ref64 and the *noise floor*, ref16's error against
ref64, on the same tensor. bf16 arithmetic through a 4-block-deep stack has an error of its own (~1e-2);
a fast path that does the same maths in the same precision lands at that floor, give or take the order
of its roundings. A check passes when

    error <= FACTOR * max(floor, MIN_FLOOR)

with FACTOR = 2 (a different but equally good rounding order stays well inside) and MIN_FLOOR = 2^-9,
half a bf16 unit in the last place: a floor below it would ask for more than bf16 storage can hold.
A fast path outside that is doing different (wrong or less precise) maths, not just rounding differently.

    forward   logits;
    backward  every parameter's gradient, each against its own floor; the row names the parameter with
              the largest error / tolerance ratio;
    decode    prefill + 64 one-token steps through the fast path (eager), logits of the last prompt token and
              of every step, vs ref64's forward at the same positions (the model is causal);
    graph     the same steps replayed from a CUDA graph;
    compile   the same steps torch.compile'd (then graph-captured): exactly one compiled graph, no
              recompilation over the steps, else the row fails whatever its error.

Errors are relative RMS, ||a - e|| / ||e|| over the whole tensor, in fp64 (max-abs is recorded beside it).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import torch

from lt2.config import ModelArgs, resolve, to_dict
from lt2.infer.decoder import Decoder
from lt2.kernels import backend
from lt2.model import LoopedLM
from lt2.recipe import load_recipe
from lt2.testing import error_stats

# pattern -> the 600M recipe whose mixer settings it uses (n_layers is cut to 2)
CASES: dict[str, str] = {
    "full": "looped_pure_full",
    "window": "looped_pure_window",
    "gdn": "looped_pure_gdn",
    "kda": "looped_pure_kda",
    "deltanet": "looped_pure_deltanet",
    "mamba2": "looped_pure_mamba2",
    "hgrn2": "looped_pure_hgrn2",
    "retnet": "looped_pure_retnet",
    "nsa": "looped_pure_nsa",
    "dsa": "looped_pure_dsa",
    "interleave:1:1:gdn:full": "looped_hybrid_gdn_4to1",
    "interleave:1:1:gdn:dsa": "looped_hybrid_gdn_dsa",
}
CHECKS = ("forward", "backward", "decode", "graph", "compile")
# Measured on an H100 80GB: a DSA case holds ~50 GB at 2 x 2048 tokens (its fp64 reference keeps an L x L
# indexer score per head for the backward); beside other cases it runs out of memory. These run one at a time,
# after the others, rather than fail once beside them and run again.
ALONE = ("dsa", "interleave:1:1:gdn:dsa")
# Started first among the others, longest first (so the last worker does not finish alone): mostly fla autotune
# and tilelang compilation, measured on an H100 (kda 173 s, gdn+full 114 s, deltanet 109 s; most others < 40 s).
LONGEST_FIRST = ("kda", "interleave:1:1:gdn:full", "deltanet", "gdn")
FACTOR = 2.0  # a fast path may be this many times the bf16 reference's own error vs fp64
MIN_FLOOR = 2.0**-9  # half a bf16 ulp: no check asks for less than bf16 storage can hold
VOCAB = 8192  # output classes of the checked models (see case_args)
# Decoder options per decode engine; the compiled step is graph-captured wherever graphs exist (CUDA).
ENGINES = {
    "decode": dict(cuda_graph=False),
    "graph": dict(cuda_graph=True),
    "compile": dict(cuda_graph=None, compile=True),
}


def tolerance(floor: float) -> float:
    """The largest error a fast path may have where the bf16 reference has `floor` (both vs fp64)."""
    return FACTOR * max(floor, MIN_FLOOR)


@dataclass
class Check:
    """One row of the numerics table: a fast path's error vs fp64 next to the bf16 reference's."""

    pattern: str
    check: str
    rel_rms: float  # the fast path vs ref64
    floor: float  # ref16 vs ref64, same tensor: the bf16 noise floor
    max_abs: float
    worst: str = ""  # the parameter a backward row reports
    seconds: float = 0.0
    problem: str = ""  # why the check fails whatever its error (it could not run, or recompiled)

    @property
    def tolerance(self) -> float:
        return tolerance(self.floor)

    @property
    def ok(self) -> bool:
        return not self.problem and math.isfinite(self.rel_rms) and self.rel_rms <= self.tolerance

    @classmethod
    def failed(cls, pattern: str, check: str, why: str, seconds: float = 0.0) -> Check:
        return cls(pattern, check, math.inf, math.nan, math.inf, seconds=seconds, problem=why[:300])


def compare(pattern: str, check: str, fast: torch.Tensor, ref16: torch.Tensor, ref64: torch.Tensor) -> Check:
    """The fast path's error and the floor, both vs ref64 (one tensor each)."""
    stats = error_stats(fast, ref64)
    return Check(pattern, check, stats["rel_rms"], error_stats(ref16, ref64)["rel_rms"], stats["max_abs"])


def worst_gradient(pattern: str, fast: LoopedLM, ref16: LoopedLM, ref64: LoopedLM) -> Check:
    """Every parameter's gradient against its own floor; the row of the largest error / tolerance ratio."""
    g16, g64 = dict(ref16.named_parameters()), dict(ref64.named_parameters())
    worst: Check | None = None
    for name, p in fast.named_parameters():
        if p.grad is None or g64[name].grad is None:
            return Check.failed(pattern, "backward", f"no gradient for {name}")
        row = compare(pattern, "backward", p.grad, g16[name].grad, g64[name].grad)
        row.worst = name
        if worst is None or not row.rel_rms / row.tolerance <= worst.rel_rms / worst.tolerance:
            worst = row  # (NaN ratios count as worst)
    return worst


def case_args(pattern: str, recipes_dir: str, seq_len: int) -> ModelArgs:
    recipe = load_recipe(f"{recipes_dir}/600M/{CASES[pattern]}.yaml")
    base = to_dict(recipe.model)
    # the vocabulary is cut to VOCAB: embedding and output head are plain matmuls, not the paths under test,
    # and a 128k-entry head would make fp64 logits and their gradient the bulk of the memory and time
    base.update(n_layers=2, loop_count=2, pattern=pattern, max_seqlen=seq_len, use_residual=True, gated_attn=True,
                vocab_size=min(base["vocab_size"], VOCAB))  # fmt: skip
    base["window"] = min(base["window"], seq_len)
    # the recipes' top-k (2048) would select every key at 2048 tokens: a quarter of them exercises the selection
    base["dsa"]["topk"] = min(base["dsa"]["topk"], seq_len // 4)
    return resolve(ModelArgs, base)


def _perturb_zero_inits(model: LoopedLM, seed: int) -> None:
    """Zero-initialised gates would hide their branch from every check: give them small random values."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "residual_gate" or name.endswith("wg.weight"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen).to(p.device))


def _loss(model: LoopedLM, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(tokens[:, :-1])
    # the loss in fp32 (fp64 for the fp64 model): its rounding must not stand in for a kernel's
    wide = logits.flatten(0, 1).to(torch.promote_types(logits.dtype, torch.float32))
    return logits, torch.nn.functional.cross_entropy(wide, tokens[:, 1:].flatten())


def models(args: ModelArgs, device: torch.device) -> tuple[LoopedLM, LoopedLM, LoopedLM]:
    """(fast bf16, ref16 bf16, ref64 fp64) with one set of bf16-rounded weights."""
    torch.manual_seed(0)
    fast = LoopedLM(args).to(device)
    fast.init_weights()
    _perturb_zero_inits(fast, 0)
    fast = fast.to(torch.bfloat16)
    ref16 = LoopedLM(args).to(device).to(torch.bfloat16)
    ref16.load_state_dict(fast.state_dict())
    ref64 = LoopedLM(args).to(device).to(torch.float64)
    ref64.load_state_dict({k: v.double() for k, v in fast.state_dict().items()})
    return fast, ref16, ref64


class _RecompileReasons(logging.Handler):
    """Collects dynamo's guard-failure messages ("Recompiling ... triggered by ...") while attached."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(" ".join(record.getMessage().split()))

    def attach(self) -> None:
        torch._logging.set_logs(recompiles=True)
        logging.getLogger("torch._dynamo").addHandler(self)

    def detach(self) -> None:
        logging.getLogger("torch._dynamo").removeHandler(self)
        torch._logging.set_logs()


def _decode(model: LoopedLM, tokens: torch.Tensor, prompt: int, steps: int, options: dict) -> tuple[torch.Tensor, str]:
    """Logits [B, 1 + steps, V] of the last prompt token and each step, and what went wrong compiling them:
    "" for exactly one compiled graph (or none, uncompiled), else the count and dynamo's reasons."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    batch = tokens.shape[0]
    decoder = Decoder(model, batch, prompt + steps + 1, **options)
    logits = [decoder.prefill(tokens[:, :prompt])[:, -1:].float()]
    # counted from here: the steps' graphs (the eager prefill may call compiled kernels such as flex_attention)
    counters.clear()
    recompiles = _RecompileReasons()
    if options.get("compile"):
        recompiles.attach()
    for t in range(prompt, prompt + steps):
        step_logits, _ = decoder.step(tokens[:, t])
        logits.append(step_logits.float()[:, None].clone())
    recompiles.detach()
    graphs = int(counters["stats"]["unique_graphs"])
    problem = ""
    if options.get("compile") and graphs != 1:  # graph breaks or recompilations: not the engine we ship
        breaks = "; ".join(f"{n}x {reason}" for reason, n in counters["graph_break"].items())
        problem = f"{graphs} compiled graphs over {steps} steps (want exactly 1); breaks: {breaks or 'none'}"
        problem += f"; recompiles: {' | '.join(recompiles.reasons) or 'none'}"
    torch._dynamo.reset()
    return torch.cat(logits, 1), problem


def verify_case(
    pattern: str, args: ModelArgs, batch: int, seq_len: int, device: torch.device, steps: int = 64
) -> list[Check]:
    """Every check of one case (see the module docstring); a check that cannot run is a failed row."""
    fast, ref16, ref64 = models(args, device)
    tokens = torch.randint(0, args.vocab_size, (batch, seq_len + 1), device=device)
    out: list[Check] = []

    start = time.perf_counter()
    with backend.reference():
        logits64, loss64 = _loss(ref64, tokens)
        loss64.backward()
        logits16, loss16 = _loss(ref16, tokens)
        loss16.backward()
    logits, loss = _loss(fast, tokens)
    out.append(compare(pattern, "forward", logits.float(), logits16.float(), logits64))
    try:
        loss.backward()
    except RuntimeError as err:  # e.g. fla refusing a gated backward on this Triton/GPU: a result, not a crash
        out.append(Check.failed(pattern, "backward", f"{type(err).__name__}: {err}"))
    else:
        out.append(worst_gradient(pattern, fast, ref16, ref64))
    out[-2].seconds = out[-1].seconds = time.perf_counter() - start
    del loss, loss16, loss64, ref16, ref64

    # the decoded positions: the last prompt token, then one per step (logits at t come from tokens <= t)
    prompt, steps = seq_len // 2, min(steps, seq_len // 2)
    window = slice(prompt - 1, prompt + steps)
    floor_16, exact = logits16[:, window].float(), logits64[:, window]
    del logits, logits16, logits64
    fast.eval()
    with torch.no_grad():
        for engine, options in ENGINES.items():
            start = time.perf_counter()
            try:
                decoded, problem = _decode(fast, tokens, prompt, steps, options)
            except Exception as err:  # an engine that fails is a result; the others are still checked
                out.append(Check.failed(pattern, engine, f"{type(err).__name__}: {err}", time.perf_counter() - start))
                continue
            row = compare(pattern, engine, decoded, floor_16, exact)
            row.seconds, row.problem = time.perf_counter() - start, problem[:600]
            if problem:
                print(f"{pattern} {engine}: {problem}", flush=True)  # in full: the row keeps 600 characters
            out.append(row)
    return out


def _verify_one(pattern: str, recipes_dir: str, batch: int, seq_len: int) -> list[Check]:
    """One case on the current CUDA device; an exception becomes one failed row."""
    try:
        args = case_args(pattern, recipes_dir, seq_len)
        return verify_case(pattern, args, batch, seq_len, torch.device("cuda"))
    except Exception as err:  # record the failure and go on with the other cases
        return [Check.failed(pattern, "error", f"{type(err).__name__}: {err}")]
    finally:
        torch.cuda.empty_cache()


def run_verify(
    patterns: list[str], recipes_dir: str, batch: int = 2, seq_len: int = 2048, jobs: int = 1
) -> list[Check]:
    """All checks of `patterns`, printed as each case finishes, in the order of `patterns`.

    jobs > 1 runs that many cases at once in spawned worker processes on the same GPU: most of a case's
    time is the host compiling its kernels (Triton, tilelang), which one process does serially. Numerics
    do not depend on what else the GPU runs.
    """
    if not torch.cuda.is_available():
        raise ValueError("lt2 verify-kernels compares the CUDA fast paths with the references; no CUDA device")
    check_cases(patterns)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return [c for p in patterns for c in _verify_star((p, recipes_dir, batch, seq_len))]
    import multiprocessing

    together = sorted(
        (p for p in patterns if p not in ALONE),
        key=lambda p: LONGEST_FIRST.index(p) if p in LONGEST_FIRST else len(LONGEST_FIRST),
    )
    with multiprocessing.get_context("spawn").Pool(max(1, min(jobs, len(together))), maxtasksperchild=1) as pool:
        done = list(pool.imap_unordered(_verify_star, [(p, recipes_dir, batch, seq_len) for p in together]))
    # then, one at a time in a fresh worker with nothing beside it: the memory-heavy cases, and any case that
    # ran out of GPU memory beside the others
    retry = [case[0].pattern for case in done if _out_of_memory(case)]
    if retry:
        print(f"again, one at a time (out of memory beside other cases): {', '.join(retry)}", flush=True)
        done = [case for case in done if case[0].pattern not in retry]
    alone = [p for p in patterns if p in ALONE] + retry
    if alone:
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            done += pool.map(_verify_star, [(p, recipes_dir, batch, seq_len) for p in alone])
    order = {p: i for i, p in enumerate(patterns)}
    return [c for case in sorted(done, key=lambda case: order[case[0].pattern]) for c in case]


def _out_of_memory(case: list[Check]) -> bool:
    return any("out of memory" in c.problem for c in case)


def _verify_star(args: tuple) -> list[Check]:
    return [_printed(c) for c in _verify_one(*args)]


def _printed(check: Check) -> Check:
    print(format_check(check), flush=True)
    return check


def check_cases(patterns: list[str]) -> None:
    unknown = [p for p in patterns if p not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; valid: {', '.join(CASES)}")


def format_check(c: Check) -> str:
    flag = "ok  " if c.ok else "FAIL"
    errors = f"rel_rms {c.rel_rms:9.2e} floor {c.floor:9.2e} tol {c.tolerance:9.2e} max_abs {c.max_abs:9.2e}"
    return f"{flag} {c.pattern:>24} {c.check:<9} {errors} {c.seconds:6.1f}s {c.worst} {c.problem}".rstrip()


def rows(checks: list[Check]) -> list[dict]:
    """The table's rows: measured error, bf16 floor, tolerance and verdict per check."""
    return [
        {**{k: v for k, v in asdict(c).items() if k != "seconds"}, "tolerance": c.tolerance, "factor": FACTOR,
         "ok": c.ok, "seconds": round(c.seconds, 2)}
        for c in checks
    ]  # fmt: skip
