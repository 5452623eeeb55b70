"""Fixtures of the distillation tests: a synthetic corpus with its BPE and a tiny teacher trained by `lt2 train`.

The corpus is generated from a fixed seed (pseudo-words), so nothing is downloaded; the teacher is a tiny
looped full-attention model (2 layers x 2 loops, GQA) trained for a few dozen steps, so that the stages
have something to distil.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def lt2(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `lt2 ...` in a subprocess (one thread); fails with its output unless it exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "lt2.cli", *map(str, args)],
        env=env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def in_process(args: list) -> None:
    """Run `lt2 ...` in this process (no interpreter start-up); fails unless it returns 0."""
    from lt2.cli import main

    assert main([str(a) for a in args]) == 0


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    from lt2.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("distill_corpus")
    rng = random.Random(7)
    (root / "chunks").mkdir()
    for c in range(2):
        lines = [json.dumps({"id": f"{c}-{i}", "text": t}) for i, t in enumerate(make_docs(rng, 60))]
        (root / "chunks" / f"toy.chunk.{c:02d}.jsonl").write_text("\n".join(lines) + "\n")
    val = root / "toy.val.jsonl"
    val.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_docs(rng, 16)))
    train_bpe([root / "chunks"], 320, root / "tokenizer")
    return Corpus(root / "chunks", val, root / "tokenizer")


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


@pytest.fixture(scope="session")
def teacher_dir(corpus, tmp_path_factory) -> Path:
    """A tiny looped full-attention teacher (dim 32, 3 layers x 2 loops, 4 heads / 2 KV heads), 40 steps."""
    root = tmp_path_factory.mktemp("teacher")
    recipe = {
        "name": "teacher",
        "scale": "tiny",
        "model": {
            "vocab_size": 320,
            "dim": 32,
            "n_layers": 3,
            "loop_count": 2,
            "n_heads": 4,
            "n_kv_heads": 2,
            "ffn_dim": 64,
            "max_seqlen": 64,
            "pattern": "full",
            "use_residual": True,
        },
        "data": {
            "train_dir": str(corpus.train_dir),
            "val_file": str(corpus.val_file),
            "tokenizer": str(corpus.tokenizer),
            "seq_len": 32,
            "batch_size": 4,
        },
        "train": {
            "steps": 40,
            "dtype": "fp32",
            "compile": False,
            "log_every": 5,
            "val_every": 40,
            "val_tokens": 1024,
            "optim": {"lr": 1e-2, "warmup_steps": 4},
            "checkpoint": {"every": 40},
        },
    }
    (root / "teacher.yaml").write_text(json.dumps(recipe))
    in_process(["train", root / "teacher.yaml", "--dump-dir", root / "run", "--out", root / "model"])
    return root / "model"
