"""Helpers of the distillation tests: the synthetic corpus, `lt2` runs in this process, data overrides.

The corpus is generated from a fixed seed (pseudo-words), so nothing is downloaded.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Corpus:
    train_dir: Path
    val_file: Path
    tokenizer: Path


def make_docs(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "an", "el", "or", "ish", "ve"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(200)]
    docs = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(words[:80]) for _ in range(rng.randint(3, 12))) for _ in range(6)]
        docs.append(". ".join(s.capitalize() for s in sentences) + ".")
    return docs


def env() -> dict[str, str]:
    out = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out.pop("RANK", None)
    return out


def in_process(args: list) -> None:
    """Run `lt2 ...` in this process (no interpreter start-up); fails unless it returns 0."""
    from lt2.cli import main

    assert main([str(a) for a in args]) == 0


def data_overrides(corpus: Corpus, *stages: str) -> list[str]:
    return [
        f"{stage}.data.{key}={value}"
        for stage in stages
        for key, value in (
            ("train_dir", corpus.train_dir),
            ("val_file", corpus.val_file),
            ("tokenizer", corpus.tokenizer),
        )
    ]
