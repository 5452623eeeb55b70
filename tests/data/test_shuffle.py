"""lt2.data.shuffle: the terashuf contract.

Checks: same seed -> byte-identical outputs, different seed -> different order; chunks + val hold exactly
the input documents (as a multiset of raw lines) also when the memory bound forces several spill runs;
file names `{dataset}.chunk.{i:02d}.jsonl` / `{dataset}.val.jsonl`, round-robin chunk sizes, K val docs;
malformed lines skipped and counted; the run merge draws runs in proportion to their remaining lines
(the property that makes the external shuffle uniform); bad arguments raise ValueError naming the value.

    pytest tests/data/test_shuffle.py
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lt2.data.jsonl import dumps_record
from lt2.data.shuffle import _merge, shuffle


def make_input(root: Path, texts: list[str], shards: int = 3) -> Path:
    """Raw documents split over `shards` files, as `lt2 data download` leaves them."""
    root.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        with open(root / f"corpus.{k:05d}.jsonl", "wb") as f:
            f.writelines(dumps_record({"id": f"d{i}", "text": t}) for i, t in enumerate(texts) if i % shards == k)
    return root


def output_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl"))}


def output_lines(out: Path) -> list[bytes]:
    return [line for data in output_bytes(out).values() for line in data.splitlines()]


def input_lines(root: Path) -> list[bytes]:
    return [line for p in sorted(root.glob("*.jsonl")) for line in p.read_bytes().splitlines()]


@pytest.fixture
def corpus(tmp_path: Path, texts_factory) -> Path:
    return make_input(tmp_path / "raw", texts_factory(401))


def test_same_seed_same_bytes_other_seed_other_order(corpus: Path, tmp_path: Path):
    args = dict(dataset="corpus", nchunks=3, val_docs=20, memory_mb=0.05)  # several spill runs
    a = shuffle(corpus, tmp_path / "a", seed=7, **args)
    shuffle(corpus, tmp_path / "b", seed=7, **args)
    shuffle(corpus, tmp_path / "c", seed=8, **args)
    assert a["runs"] >= 3
    assert output_bytes(tmp_path / "a") == output_bytes(tmp_path / "b")
    assert output_lines(tmp_path / "a") != output_lines(tmp_path / "c")
    assert sorted(output_lines(tmp_path / "a")) == sorted(output_lines(tmp_path / "c"))


@pytest.mark.parametrize("memory_mb", [64.0, 0.05, 0.001], ids=["in-memory", "spill-runs", "one-doc-runs"])
def test_documents_preserved_exactly(corpus: Path, tmp_path: Path, memory_mb: float):
    out = tmp_path / "out"
    m = shuffle(corpus, out, "corpus", nchunks=4, seed=0, memory_mb=memory_mb, val_docs=33)
    assert Counter(output_lines(out)) == Counter(input_lines(corpus))  # nothing lost, nothing duplicated
    assert m["docs"] == 401 and sum(c["docs"] for c in m["chunks"]) + m["val"]["docs"] == 401
    assert (m["runs"] == 1) == (memory_mb == 64.0)
    assert output_lines(out) != input_lines(corpus)  # and it did shuffle


def test_names_counts_and_round_robin(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    m = shuffle(corpus, out, "fineweb_edu_10bt", nchunks=12, seed=1, memory_mb=0.05, val_docs=50)
    expected = {f"fineweb_edu_10bt.chunk.{i:02d}.jsonl" for i in range(12)} | {"fineweb_edu_10bt.val.jsonl"}
    assert set(output_bytes(out)) == expected
    assert (out / "fineweb_edu_10bt.shuffle.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files or runs left
    sizes = [len((out / c["file"]).read_bytes().splitlines()) for c in m["chunks"]]
    assert sizes == [c["docs"] for c in m["chunks"]] and sum(sizes) == 351 and max(sizes) - min(sizes) <= 1
    assert len((out / "fineweb_edu_10bt.val.jsonl").read_bytes().splitlines()) == 50


def test_val_is_head_of_shuffled_stream(corpus: Path, tmp_path: Path):
    """Same seed, different K: the val file of the larger K starts with the smaller one (it is a prefix)."""
    shuffle(corpus, tmp_path / "k10", "corpus", nchunks=1, seed=3, memory_mb=0.05, val_docs=10)
    shuffle(corpus, tmp_path / "k30", "corpus", nchunks=1, seed=3, memory_mb=0.05, val_docs=30)
    v10 = (tmp_path / "k10" / "corpus.val.jsonl").read_bytes()
    v30 = (tmp_path / "k30" / "corpus.val.jsonl").read_bytes()
    assert v30.startswith(v10) and len(v30.splitlines()) == 30


def test_malformed_lines_skipped_and_counted(corpus: Path, tmp_path: Path):
    bad = corpus / "corpus.00001.jsonl"
    bad.write_bytes(bad.read_bytes() + b"{broken\n" + b'{"no_text": 1}\n' + b'{"text": "cut sh')
    out = tmp_path / "out"
    m = shuffle(corpus, out, "corpus", nchunks=2, seed=0, memory_mb=0.05, val_docs=5)
    assert m["malformed_lines"] == 3 and m["docs"] == 401
    assert m["malformed_examples"][0].startswith("corpus.00001.jsonl@")
    lines = output_lines(out)
    assert len(lines) == 401 and all("text" in json.loads(line) for line in lines)


def test_real_fineweb_sample_spills_and_keeps_every_document(fineweb_jsonl: Path, tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "fineweb.00000.jsonl").write_bytes(fineweb_jsonl.read_bytes())
    m = shuffle(raw, tmp_path / "out", "fineweb", nchunks=4, seed=0, memory_mb=0.25, val_docs=10)
    assert m["docs"] == 250 and m["runs"] >= 4
    assert Counter(output_lines(tmp_path / "out")) == Counter(input_lines(raw))


def test_merge_draws_runs_in_proportion_to_lines_left():
    """P(first merged line comes from run r) = n_r / N. A merge choosing runs uniformly would give 1/3 each."""
    counts = [1, 2, 7]
    firsts = Counter()
    for seed in range(3000):
        runs = [io.BytesIO(b"".join(b"%d\n" % r for _ in range(n))) for r, n in enumerate(counts)]
        merged = list(_merge(runs, counts, np.random.default_rng(seed)))
        assert sorted(merged) == sorted(b"%d\n" % r for r, n in enumerate(counts) for _ in range(n))
        firsts[int(merged[0])] += 1
    freq = np.array([firsts[r] for r in range(3)]) / 3000
    assert np.allclose(freq, [0.1, 0.2, 0.7], atol=0.03), freq


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(nchunks=0), "--nchunks must be >= 1, got 0"),
        (dict(memory_mb=0), "--memory-mb must be > 0"),
        (dict(val_docs=-1), "--val-docs must be >= 0"),
        (dict(dataset="../evil"), "--dataset '../evil'"),
        (dict(val_docs=400, nchunks=2), "has 401 documents: too few for --val-docs 400"),
    ],
    ids=["nchunks", "memory", "val", "name", "too-few-docs"],
)
def test_bad_arguments(corpus: Path, tmp_path: Path, kwargs: dict, message: str):
    args = dict(dataset="corpus", nchunks=2, seed=0, val_docs=1) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        shuffle(corpus, tmp_path / "out", **args)
    assert not list((tmp_path / "out").glob("*.jsonl"))  # nothing half-written is left behind


def test_missing_or_empty_input(tmp_path: Path):
    with pytest.raises(ValueError, match="is not a directory"):
        shuffle(tmp_path / "nope", tmp_path / "out", "x", nchunks=1, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no \*\.jsonl files"):
        shuffle(tmp_path / "empty", tmp_path / "out", "x", nchunks=1, seed=0)
