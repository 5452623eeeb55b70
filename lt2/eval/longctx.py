"""Long-context evaluation (paper Table 5): NIAH-Single-1/2/3 per context length and the recall-intensive suite.

Everything runs through lm-eval: the NIAH tasks and the Based/JRT TriviaQA/NQ/DROP tasks are project task
YAMLs (`lt2/eval/longctx_tasks/`), SWDE, FDA and SQuAD-completion are lm-eval's stock tasks, and the model is the
`lt2` lm-eval model (`lt2.eval.harness`) or any `lm_eval.api.model.LM` passed in.

Extrapolation: the decode caches are sized for the longest context plus the generated tokens
(`max_length`), not for the training length; RoPE positions beyond the training length are used as they
are. A context that does not fit the cache capacity is refused before any work, naming the limit: the
harness would otherwise truncate it from the left, and a NIAH score would silently measure a shorter prompt.

A recall task whose dataset is not in the local Hugging Face cache is reported as "not run: needs <dataset>
from the Hub" when the Hub is off (the offline tiny default), never dropped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lt2.eval.niah import KINDS

TASKS_DIR = Path(__file__).parent / "longctx_tasks"
NIAH_TASKS = tuple(f"lt2_{kind}" for kind in KINDS)  # lt2_niah_single_1, _2, _3
# Recall-intensive suite: lm-eval task -> its Hugging Face dataset (all score `contains`).
RECALL_DATASETS = {
    "swde": "hazyresearch/based-swde-v2",
    "squad_completion": "hazyresearch/based-squad",
    "fda": "hazyresearch/based-fda",
    "based_triviaqa": "hazyresearch/based_triviaqa",
    "based_nq": "hazyresearch/based_nq_2048",
    "based_drop": "hazyresearch/based_drop",
}
RECALL_METRIC = "contains"
RELATIVE_LENGTHS = (0.5, 1.0, 2.0)  # the paper's 1K/2K/4K for models trained at 2048


@dataclass
class LongctxArgs:
    """What `lt2 eval longctx` runs; see config `eval.longctx`."""

    context_lengths: list[int] | None = None  # NIAH prompt lengths in model tokens; None: 0.5x/1x/2x training
    num_samples: int = 500  # NIAH prompts per task and length (RULER: 500)
    seed: int = 42
    niah_tasks: list[str] = field(default_factory=lambda: list(NIAH_TASKS))
    recall_tasks: list[str] = field(default_factory=lambda: list(RECALL_DATASETS))
    hub: bool = True  # False: recall tasks whose dataset is not in the local HF cache are reported as not run
    max_gen_toks: int = 128  # NIAH answer budget (RULER: 128)
    max_length: int | None = None  # decode cache capacity in tokens; None: longest context + max_gen_toks
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"  # lt2 lm-eval model: auto (bfloat16 on CUDA, else float32) | float32 | bfloat16 | float16

    def check(self) -> None:
        """ValueError for anything a user can get wrong, before any data or model is touched."""
        unknown = [t for t in self.niah_tasks if t not in NIAH_TASKS]
        if unknown:
            raise ValueError(f"unknown NIAH task(s) {unknown}; choose from {', '.join(NIAH_TASKS)}")
        unknown = [t for t in self.recall_tasks if t not in RECALL_DATASETS]
        if unknown:
            raise ValueError(f"unknown recall task(s) {unknown}; choose from {', '.join(RECALL_DATASETS)}")
        if self.context_lengths is not None and (not self.context_lengths or min(self.context_lengths) < 1):
            raise ValueError(f"context_lengths must be positive token counts, got {self.context_lengths}")
        for name in ("num_samples", "max_gen_toks", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def resolve_lengths(args: LongctxArgs, train_seq_len: int) -> list[int]:
    """The NIAH context lengths: as configured, else 0.5x, 1x and 2x the training length."""
    if args.context_lengths is not None:
        return sorted({int(n) for n in args.context_lengths})
    return [int(r * train_seq_len) for r in RELATIVE_LENGTHS]


def cache_capacity(args: LongctxArgs, lengths: list[int]) -> int:
    """Decode cache slots the evaluation needs; refuses a configured capacity that is too small, naming it."""
    needed = max(lengths) + args.max_gen_toks
    if args.max_length is None:
        return needed
    if needed > args.max_length:
        raise ValueError(
            f"context length {max(lengths)} + {args.max_gen_toks} generated tokens needs {needed} cache slots, "
            f"above the cache capacity max_length={args.max_length}; raise max_length or drop that length"
        )
    return args.max_length


def hub_cached(dataset: str) -> bool:
    """Whether a Hub dataset repository has a snapshot in the local Hugging Face cache (readable offline)."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"datasets--{dataset.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def recall_plan(args: LongctxArgs) -> tuple[list[str], dict[str, str]]:
    """(recall tasks to run, {task: why not run}): offline, a task runs only when its data is cached."""
    run, skipped = [], {}
    for task in args.recall_tasks:
        dataset = RECALL_DATASETS[task]
        if args.hub or hub_cached(dataset):
            run.append(task)
        else:
            skipped[task] = f"not run: needs {dataset} from the Hub"
    return run, skipped


def task_dirs() -> list[str]:
    """Where the suite's task YAMLs live: the project's and lm-eval's swde, fda and squad_completion folders
    (indexing only these, not lm-eval's thousands of tasks, saves seconds per run)."""
    import lm_eval.tasks

    stock = Path(lm_eval.tasks.__file__).parent
    return [str(TASKS_DIR), *(str(stock / t) for t in ("swde", "fda", "squad_completion"))]


def niah_task_configs(args: LongctxArgs, lengths: list[int]) -> list[dict[str, Any]]:
    """One inline lm-eval task per (NIAH task, length), named `<task>@<length>`, from the project's YAMLs."""
    from lm_eval.tasks._yaml_loader import load_yaml

    configs = []
    for task in args.niah_tasks:
        base = load_yaml(TASKS_DIR / f"{task}.yaml", resolve_func=True)
        for length in lengths:
            cfg = dict(base)
            cfg["task"] = f"{task}@{length}"
            cfg["tag"] = []
            cfg["metadata"] = {**base.get("metadata", {}), "context_lengths": [length]}
            cfg["generation_kwargs"] = {**base["generation_kwargs"], "max_gen_toks": args.max_gen_toks}
            configs.append(cfg)
    return configs


def train_seq_len(model_dir: str | Path) -> int:
    """The sequence length the model was trained at (recipe.yaml beside the weights, else its max_seqlen)."""
    from lt2.eval.perplexity import training_data_args

    seq_len = training_data_args(model_dir).get("seq_len")
    if seq_len is None:
        seq_len = json.loads((Path(model_dir) / "config.json").read_text())["max_seqlen"]
    return int(seq_len)


def _percent(value) -> float | None:
    """A fraction as %; lm-eval writes "N/A" for a standard error it cannot compute (one sample)."""
    return 100 * value if isinstance(value, (int, float)) else None


def collect(results: dict, args: LongctxArgs, lengths: list[int], skipped: dict[str, str]) -> dict[str, Any]:
    """lm-eval's results -> {"niah": {task: {length: acc %}}, "recall": {task: {...}}}."""
    out: dict[str, Any] = {"niah": {}, "recall": {}}
    for task in args.niah_tasks:
        per_length = {}
        for length in lengths:
            res = results[f"{task}@{length}"]
            per_length[str(length)] = {"acc": 100 * res["acc,none"], "stderr": _percent(res["acc_stderr,none"])}
        out["niah"][task] = per_length
    for task in args.recall_tasks:
        if task in skipped:
            out["recall"][task] = {"status": skipped[task], "dataset": RECALL_DATASETS[task]}
            continue
        res = results[task]
        out["recall"][task] = {
            "status": "ok",
            "dataset": RECALL_DATASETS[task],
            RECALL_METRIC: 100 * res[f"{RECALL_METRIC},none"],
            "stderr": _percent(res[f"{RECALL_METRIC}_stderr,none"]),
        }
    return out


def run_longctx(
    model_dir: str | Path,
    tokenizer_dir: str | Path,
    haystack: str | Path | None,
    args: LongctxArgs,
    lm=None,
    seq_len: int | None = None,
) -> dict[str, Any]:
    """Evaluate the model in `model_dir` (or an lm-eval `lm` given instead) on NIAH and the recall suite.

    `haystack` is the JSONL of documents NIAH-Single-2/3 hide their needle in; `seq_len` overrides the training
    length read from the model directory. Returns the record `lt2 eval longctx` writes.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    args.check()
    if any(t != "lt2_niah_single_1" for t in args.niah_tasks) and haystack is None:
        raise ValueError("NIAH-Single-2/3 need --haystack: a JSONL of documents (the corpus's held-out file)")
    seq_len = seq_len or train_seq_len(model_dir)
    lengths = resolve_lengths(args, seq_len)
    capacity = cache_capacity(args, lengths)
    recall_run, skipped = recall_plan(args)
    metadata = {"tokenizer": str(tokenizer_dir), "num_samples": args.num_samples, "seed": args.seed,
                "haystack": str(haystack) if haystack else None}  # fmt: skip
    manager = TaskManager(include_path=task_dirs(), include_defaults=False, metadata=metadata)
    tasks = [*niah_task_configs(args, lengths), *recall_run]
    if lm is None:
        import lt2.eval.harness  # noqa: F401  (registers the `lt2` lm-eval model)

        model_args = {"pretrained": str(model_dir), "tokenizer": str(tokenizer_dir), "dtype": args.dtype,
                      "batch_size": args.batch_size, "device": args.device, "max_length": capacity}  # fmt: skip
        lm = lm_eval.api.registry.get_model("lt2").create_from_arg_obj(model_args)
    evaluated = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, random_seed=args.seed,
                                        numpy_random_seed=args.seed, torch_random_seed=args.seed,
                                        fewshot_random_seed=args.seed)  # fmt: skip
    record = {
        "model": str(model_dir),
        "tokenizer": str(tokenizer_dir),
        "haystack": str(haystack) if haystack else None,
        "train_seq_len": seq_len,
        "context_lengths": lengths,
        "max_length": capacity,
        "lm_eval_version": lm_eval.__version__,
        **{k: v for k, v in dataclasses.asdict(args).items() if k not in {"context_lengths", "max_length"}},
        **collect(evaluated["results"], args, lengths, skipped),
    }
    recipe = Path(model_dir) / "recipe.yaml"
    if recipe.is_file():  # written by `lt2 train` next to the weights
        import yaml

        meta = yaml.safe_load(recipe.read_text()) or {}
        record["recipe"], record["scale"] = meta.get("name"), meta.get("scale")
    return record


def format_record(record: dict[str, Any]) -> str:
    """A few readable lines: NIAH accuracy per task and length, then each recall task's score or status."""
    lines = [f"trained at {record['train_seq_len']} tokens; NIAH accuracy (%) per context length:"]
    for task, per_length in record["niah"].items():
        lines.append(f"  {task}: " + "  ".join(f"{n}: {v['acc']:.1f}" for n, v in per_length.items()))
    for task, res in record["recall"].items():
        lines.append(f"  {task}: " + (f"{res[RECALL_METRIC]:.1f}" if res["status"] == "ok" else res["status"]))
    return "\n".join(lines)
