"""`lt2 verify-kernels`: the CUDA fast paths against the pure-PyTorch references at realistic shapes.

For every mixer and two hybrids, on a 2-layer, 2-loop model at dim 1024, 16 heads, 2 x 2048 tokens:
- forward:   logits of the fast path in bf16 vs the reference path in fp32 (same weights);
- backward:  every parameter's gradient, same comparison (the worst parameter is reported);
- decode:    prefill(1024) + 32 one-token steps on the fast path vs its own full forward (bf16);
- graph:     the same steps replayed from a CUDA graph vs eager steps (must agree to rounding);
- compile:   the steps torch.compile'd and replayed from a CUDA graph vs eager steps (fusion reorders
             bf16 roundings, so the decode tolerance applies).
Errors are relative RMS (and max-abs); bf16 through a 4-block-deep stack lands around 1e-2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from lt2.config import ModelArgs, load_recipe, resolve, to_dict
from lt2.infer.decoder import Decoder
from lt2.kernels import backend
from lt2.model import LoopedLM
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
TOLERANCE = {"forward": 3e-2, "backward": 6e-2, "decode": 3e-2, "graph": 1e-3, "compile": 3e-2}
# Decoder options per decode engine; the compiled step is graph-captured wherever graphs exist (CUDA).
ENGINES = {
    "eager": dict(cuda_graph=False),
    "graph": dict(cuda_graph=True),
    "compile": dict(cuda_graph=None, compile=True),
}


@dataclass
class Check:
    pattern: str
    check: str
    rel_rms: float
    max_abs: float
    tolerance: float
    worst: str = ""

    @property
    def ok(self) -> bool:
        return self.rel_rms <= self.tolerance


def case_args(pattern: str, recipes_dir: str, seq_len: int) -> ModelArgs:
    recipe = load_recipe(f"{recipes_dir}/600M/{CASES[pattern]}.yaml")
    base = to_dict(recipe.model)
    base.update(n_layers=2, loop_count=2, pattern=pattern, max_seqlen=seq_len, use_residual=True, gated_attn=True)
    base["window"] = min(base["window"], seq_len)
    return resolve(ModelArgs, base)


def _perturb_zero_inits(model: LoopedLM, seed: int) -> None:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "residual_gate" or name.endswith("wg.weight"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen).to(p.device))


def _loss(model: LoopedLM, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
    return logits, loss


def verify_case(pattern: str, args: ModelArgs, batch: int, seq_len: int, device: torch.device) -> list[Check]:
    torch.manual_seed(0)
    fast = LoopedLM(args).to(device)
    fast.init_weights()
    _perturb_zero_inits(fast, 0)
    fast = fast.to(torch.bfloat16)
    # The reference runs in fp32 on the *same* (bf16-rounded) weights: the comparison measures the kernels'
    # arithmetic, not the rounding of the weights.
    ref = LoopedLM(args).to(device)
    ref.load_state_dict({k: v.float() for k, v in fast.state_dict().items()})
    tokens = torch.randint(0, args.vocab_size, (batch, seq_len + 1), device=device)

    with backend.reference():
        ref_logits, ref_loss = _loss(ref, tokens)
        ref_loss.backward()
    fast_logits, fast_loss = _loss(fast, tokens)
    out = [Check(pattern, "forward", **error_stats(fast_logits.float(), ref_logits), tolerance=TOLERANCE["forward"])]
    try:
        fast_loss.backward()
    except RuntimeError as err:  # e.g. fla refusing a gated backward on this Triton/GPU: a result, not a crash
        out.append(Check(pattern, "backward", float("inf"), float("inf"), TOLERANCE["backward"], str(err)[:200]))
    else:
        worst = ("", -1.0, 0.0)
        ref_params = dict(ref.named_parameters())
        for name, p in fast.named_parameters():
            stats = error_stats(p.grad.float(), ref_params[name].grad)
            if stats["rel_rms"] > worst[1]:
                worst = (name, stats["rel_rms"], stats["max_abs"])
        out.append(Check(pattern, "backward", worst[1], worst[2], TOLERANCE["backward"], worst=worst[0]))

    fast.eval()
    with torch.no_grad():
        prompt, steps = seq_len // 2, min(32, seq_len // 2)
        full = fast(tokens[:, : prompt + steps]).float()
        outs = {}
        for engine, options in ENGINES.items():
            try:
                decoder = Decoder(fast, batch, prompt + steps + 1, **options)
                logits = [decoder.prefill(tokens[:, :prompt]).float()]
                for t in range(prompt, prompt + steps):
                    step_logits, _ = decoder.step(tokens[:, t])
                    logits.append(step_logits.float()[:, None].clone())
            except Exception as err:  # an engine that fails here is a result; the others are still checked
                if engine == "eager":
                    raise
                out.append(Check(pattern, engine, float("inf"), float("inf"), TOLERANCE[engine], str(err)[:200]))
            else:
                outs[engine] = torch.cat(logits, 1)
            torch._dynamo.reset()
    out.append(Check(pattern, "decode", **error_stats(outs["eager"], full), tolerance=TOLERANCE["decode"]))
    for engine in ("graph", "compile"):
        if engine in outs:
            stats = error_stats(outs[engine], outs["eager"])
            out.append(Check(pattern, engine, **stats, tolerance=TOLERANCE[engine]))
    return out


def run_verify(patterns: list[str], recipes_dir: str, batch: int = 2, seq_len: int = 2048) -> list[Check]:
    if not torch.cuda.is_available():
        raise ValueError("lt2 verify-kernels compares the CUDA fast paths with the references; no CUDA device")
    unknown = [p for p in patterns if p not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; valid: {', '.join(CASES)}")
    device = torch.device("cuda")
    checks = []
    for pattern in patterns:
        try:
            case_checks = verify_case(pattern, case_args(pattern, recipes_dir, seq_len), batch, seq_len, device)
        except Exception as err:  # record the failure and go on with the other cases
            case_checks = [
                Check(pattern, "error", float("inf"), float("inf"), 0.0, f"{type(err).__name__}: {err}"[:300])
            ]
        for check in case_checks:
            print(format_check(check), flush=True)
            checks.append(check)
        torch.cuda.empty_cache()
    return checks


def format_check(c: Check) -> str:
    flag = "ok  " if c.ok else "FAIL"
    errors = f"rel_rms {c.rel_rms:9.2e} (tol {c.tolerance:.0e})  max_abs {c.max_abs:9.2e}"
    return f"{flag} {c.pattern:>24} {c.check:<9} {errors} {c.worst}"


def rows(checks: list[Check]) -> list[dict]:
    return [{**asdict(c), "ok": c.ok} for c in checks]
