"""Fixtures for the training-engine tests: a synthetic corpus with a tiny BPE, tiny recipes, golden runs.

The corpus is generated from a fixed seed (pseudo-words with a skewed frequency), so it needs no download
and is identical everywhere; the tokenizer is the project's byte-level BPE (lt2.data.tokenizer) trained on
it. Golden runs are session fixtures: uninterrupted runs that resumed runs must reproduce exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from train_helpers import MALFORMED, Corpus, checked, make_docs, recipe_text, run_train


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    from lt2.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(1234)
    train_dir = root / "chunks"
    train_dir.mkdir()
    docs, malformed = [], 0
    for c in range(3):
        chunk_docs = make_docs(rng, 50)
        lines = [json.dumps({"id": f"{c}-{i}", "text": t}).encode() for i, t in enumerate(chunk_docs)]
        for j, bad in enumerate(MALFORMED[c::3]):  # a few bad lines at fixed places in every chunk
            lines.insert(7 + 11 * j, bad)
            malformed += 1
        (train_dir / f"toy.chunk.{c:02d}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        docs += chunk_docs
    val_file = root / "toy.val.jsonl"
    val_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_docs(rng, 12)))
    train_bpe([train_dir], 384, root / "tokenizer")
    return Corpus(train_dir, val_file, root / "tokenizer", docs, malformed)


@pytest.fixture
def recipe(corpus, tmp_path) -> Path:
    path = tmp_path / "tiny_train.yaml"
    path.write_text(recipe_text(corpus))
    return path


def golden_run(corpus, root: Path, **run_options) -> Path:
    """An uninterrupted run of the tiny recipe under `root` (root/run, and what run_options ask for)."""
    recipe = root / "tiny_train.yaml"
    recipe.write_text(recipe_text(corpus))
    checked(run_train(recipe, root / "run", **run_options))
    return root


@pytest.fixture(scope="session")
def golden_single(corpus, tmp_path_factory) -> Path:
    """An uninterrupted single-rank run (its run dir); every single-rank resume test compares against it."""
    root = tmp_path_factory.mktemp("golden1")
    return golden_run(corpus, root, out=root / "out")


@pytest.fixture(scope="session")
def golden_two_ranks(corpus, tmp_path_factory) -> Path:
    """The same recipe, uninterrupted, on 2 gloo ranks under torchrun with FSDP."""
    return golden_run(corpus, tmp_path_factory.mktemp("golden2"), nproc=2)
