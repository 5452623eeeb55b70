"""Fixtures of the distillation tests: a synthetic corpus with its BPE and a tiny teacher trained by `lt2 train`.

The corpus is generated from a fixed seed (pseudo-words), so nothing is downloaded; the teacher is a tiny
looped full-attention model (3 layers x 2 loops, GQA) trained for a few dozen steps, so that the stages
have something to distil.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from distill_helpers import Corpus, in_process, make_docs


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
