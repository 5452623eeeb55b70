"""lm-eval glue of the NIAH tasks: datasets built by lt2.eval.niah from task metadata, RULER's scoring."""

from __future__ import annotations

import datasets

from lt2.eval.niah import niah_samples, read_haystack, string_match_all


def build(task: str, tokenizer=None, context_lengths=None, num_samples: int = 500, seed: int = 42,
          haystack=None, **_) -> dict[str, datasets.Dataset]:  # fmt: skip
    """{"test": rows} for one NIAH task; `_` takes the rest of lm-eval's metadata (version, model args)."""
    from lt2.data.tokenizer import Tokenizer

    if tokenizer is None or context_lengths is None:
        raise ValueError(f"{task} needs metadata tokenizer=<tokenizer dir> and context_lengths=[...] (model tokens)")
    tok = Tokenizer.load(tokenizer)
    essay = read_haystack(haystack) if haystack else None
    rows = niah_samples(task, list(context_lengths), int(num_samples), int(seed),
                        lambda text: len(tok.encode(text, bos=True)), essay)  # fmt: skip
    return {"test": datasets.Dataset.from_list(rows, split=datasets.Split.TEST)}


def niah_single_1(**metadata) -> dict[str, datasets.Dataset]:
    return build("niah_single_1", **metadata)


def niah_single_2(**metadata) -> dict[str, datasets.Dataset]:
    return build("niah_single_2", **metadata)


def niah_single_3(**metadata) -> dict[str, datasets.Dataset]:
    return build("niah_single_3", **metadata)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"acc": string_match_all(results[0], doc["outputs"])}
