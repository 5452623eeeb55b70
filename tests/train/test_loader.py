"""The packed loader: BOS/EOS packing, doc_start, malformed lines, stream assignment without dropping chunks,
resumable and world-size-independent positions, validation rows.

    pytest tests/train/test_loader.py
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from lt2.data.args import DataArgs
from lt2.data.loader import (
    DocStream,
    PackedLoader,
    find_chunks,
    merge_states,
    split_file,
    stream_specs,
    validation_rows,
)

BOS, EOS = 1, 2


class CharTokenizer:
    """Every character is one token (3 + code point % 61): BOS/EOS never come out of text."""

    bos_id, eos_id, vocab_size = BOS, EOS, 64

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        return [BOS] * bos + [3 + ord(c) % 61 for c in text] + [EOS] * eos

    def encode_batch(self, texts, bos: bool = False, eos: bool = False) -> list[list[int]]:
        return [self.encode(t, bos, eos) for t in texts]


def write_chunks(root: Path, n_chunks: int, docs_per_chunk: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs = []
    for c in range(n_chunks):
        texts = ["".join(rng.choice("abcdéfgh ijk") for _ in range(rng.randint(1, 40))) for _ in range(docs_per_chunk)]
        (root / f"toy.chunk.{c:02d}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        docs.append(texts)
    return docs


def args(root: Path, **kw) -> DataArgs:
    return DataArgs(train_dir=str(root), tokenizer="unused", **{"seq_len": 16, "batch_size": 3, "prefetch": 0, **kw})


def unshare(rows: list[np.ndarray]) -> list[int]:
    """The token stream behind consecutive rows of one stream (each row after the first repeats one token)."""
    return list(rows[0]) + [int(t) for r in rows[1:] for t in r[1:]]


def test_rows_pack_documents_with_bos_eos_and_wrap_without_loss(tmp_path):
    docs = write_chunks(tmp_path, 1, 9)[0]
    tok = CharTokenizer()
    spec = stream_specs(find_chunks(tmp_path), 1)[0]
    stream = DocStream(spec, tok, seq_len=16)
    epoch = [t for d in docs for t in tok.encode(d, bos=True, eos=True)]
    n_rows = 2 * len(epoch) // 16  # about two epochs
    rows = [stream.next_row() for _ in range(n_rows)]
    tokens = unshare([r[0] for r in rows])
    assert tokens == (epoch * 3)[: len(tokens)]  # file order, every token once, the second epoch continues seamlessly
    assert stream.state()["epoch"] == 1
    for r_tokens, r_starts in rows:  # doc_start marks exactly the BOS tokens, which start documents
        assert np.array_equal(r_starts, r_tokens == BOS)


def test_batches_are_shifted_rows_with_doc_start(tmp_path):
    write_chunks(tmp_path, 2, 6)
    loader = PackedLoader(args(tmp_path, doc_mask=True), CharTokenizer())
    batch = next(loader)
    assert batch.inputs.shape == batch.targets.shape == batch.doc_start.shape == (3, 16)
    assert (batch.targets[:, :-1] == batch.inputs[:, 1:]).all()
    assert (batch.doc_start == (batch.inputs == BOS)).all() and batch.doc_start.any()
    assert next(PackedLoader(args(tmp_path), CharTokenizer())).doc_start is None
    loader.close()


def test_malformed_lines_are_counted_and_skipped(tmp_path, caplog):
    good = ["alpha", "beta", "gamma", "delta"]
    lines = [
        json.dumps({"text": good[0]}).encode(),
        b"{not json",
        json.dumps({"id": "x"}).encode(),  # no text
        json.dumps({"text": 5}).encode(),  # text not a string
        b"",  # blank: not a record, not malformed
        json.dumps({"text": good[1]}).encode(),
        b'{"text": "caf\xe9"}',  # invalid UTF-8
        b"[1, 2]",
        json.dumps({"text": good[2]}).encode(),
        json.dumps({"text": good[3]}).encode()[:-3],  # a record cut short by a killed writer
    ]
    (tmp_path / "toy.chunk.00.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    tok = CharTokenizer()
    stream = DocStream(stream_specs(find_chunks(tmp_path), 1)[0], tok, seq_len=4)
    rows = [stream.next_row()[0] for _ in range(8)]
    epoch = [t for d in good[:3] for t in tok.encode(d, bos=True, eos=True)]
    assert unshare(rows) == (epoch * 3)[: len(unshare(rows))]
    state = stream.state()  # counts lines before the oldest buffered document; each pass counts them again
    offsets = np.cumsum([0] + [len(line) + 1 for line in lines])
    bad_before = sum(1 for i in (1, 2, 3, 6, 7, 9) if offsets[i] < state["offset"])
    assert state["epoch"] >= 1 and state["malformed"] == 6 * state["epoch"] + bad_before
    assert state["docs"] == 3 * state["epoch"] + sum(1 for i in (0, 5, 8) if offsets[i] < state["offset"])
    assert "malformed record skipped: toy.chunk.00.jsonl@" in caplog.text


@pytest.mark.parametrize(("n_chunks", "world_size"), [(1, 2), (2, 3), (3, 2), (5, 2), (4, 4)])
def test_every_line_of_every_chunk_belongs_to_exactly_one_rank(tmp_path, n_chunks, world_size):
    write_chunks(tmp_path, n_chunks, 7, seed=n_chunks)
    files = find_chunks(tmp_path)
    owner: dict[tuple[str, int], int] = {}
    for rank in range(world_size):
        loader = PackedLoader(args(tmp_path), CharTokenizer(), rank=rank, world_size=world_size)
        assert loader.streams, f"rank {rank} has no stream"
        for stream in loader.streams.values():
            data = stream.spec.path.read_bytes()
            starts = [0, *(i + 1 for i, b in enumerate(data[:-1]) if b == ord("\n"))]
            for start in starts:
                if stream.spec.start <= start < stream.spec.end:
                    assert (stream.spec.path.name, start) not in owner, "a line is read by two streams"
                    owner[(stream.spec.path.name, start)] = rank
        loader.close()
    lines = sum(p.read_bytes().count(b"\n") for p in files)
    assert len(owner) == lines  # nothing dropped, whatever chunks vs ranks
    assert {name for name, _ in owner} == {p.name for p in files}


def test_split_file_is_line_aligned(tmp_path):
    rng = random.Random(3)
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(("é" * rng.randint(0, 30) + "\n").encode() for _ in range(25)))
    data = path.read_bytes()
    for parts in range(1, 9):
        ranges = split_file(path, parts)
        assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(start == 0 or data[start - 1] == ord("\n") for start, _ in ranges)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resumed_loader_continues_exactly(tmp_path, prefetch):
    write_chunks(tmp_path, 3, 8)
    a = args(tmp_path, prefetch=prefetch, doc_mask=True)
    loader = PackedLoader(a, CharTokenizer())
    for _ in range(5):
        next(loader)
    state = merge_states([loader.state_dict()])  # taken with batches already prefetched: they must not count
    rest = [next(loader) for _ in range(7)]
    loader.close()
    resumed = PackedLoader(a, CharTokenizer(), state=json.loads(json.dumps(state)))  # through JSON, as saved
    again = [next(resumed) for _ in range(7)]
    resumed.close()
    for x, y in zip(rest, again):
        assert (x.inputs == y.inputs).all() and (x.doc_start == y.doc_start).all()
        assert x.fingerprint == y.fingerprint
    assert state["tokens"] == 5 * 3 * 16


def test_resume_on_fewer_ranks_continues_every_stream(tmp_path):
    write_chunks(tmp_path, 2, 8)
    a = args(tmp_path)
    ranks = [PackedLoader(a, CharTokenizer(), rank=r, world_size=2) for r in range(2)]
    for loader in ranks:
        for _ in range(3):
            next(loader)
    state = merge_states([r.state_dict() for r in ranks])
    for loader in ranks:
        loader.close()
    assert state["n_streams"] == 2 and state["tokens"] == 2 * 3 * 3 * 16
    single = PackedLoader(a, CharTokenizer(), state=state)  # one rank now owns both streams
    specs = stream_specs(find_chunks(tmp_path), 2)
    fresh = [DocStream(spec, CharTokenizer(), 16) for spec in specs]
    for s, stream in enumerate(fresh):
        for _ in range(state["streams"][str(s)]["rows"]):
            stream.next_row()
    for s in (0, 1):  # the next row of each stream is the one after those consumed before the resume
        assert np.array_equal(single.streams[s].next_row()[0], fresh[s].next_row()[0])
    single.close()


def test_resume_refuses_what_cannot_continue(tmp_path):
    write_chunks(tmp_path, 2, 4)
    loader = PackedLoader(args(tmp_path), CharTokenizer())
    next(loader)
    state = merge_states([loader.state_dict()])
    loader.close()
    with pytest.raises(ValueError, match="at most 2 ranks"):
        PackedLoader(args(tmp_path), CharTokenizer(), rank=0, world_size=3, state=state)
    with pytest.raises(ValueError, match="seq_len"):
        PackedLoader(args(tmp_path, seq_len=8), CharTokenizer(), state=state)
    with pytest.raises(ValueError, match=r"data\.streams=4"):
        PackedLoader(args(tmp_path, streams=4), CharTokenizer(), state=state)
    with open(tmp_path / "toy.chunk.01.jsonl", "a") as f:
        f.write(json.dumps({"text": "late addition"}) + "\n")
    with pytest.raises(ValueError, match="changed since the checkpoint"):
        PackedLoader(args(tmp_path), CharTokenizer(), state=state)
    with pytest.raises(ValueError, match="multiple of the number of chunk files"):
        PackedLoader(args(tmp_path, streams=3), CharTokenizer())
    with pytest.raises(ValueError, match="is not a directory"):
        PackedLoader(args(tmp_path / "missing"), CharTokenizer())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no `\{dataset\}\.chunk"):
        PackedLoader(args(tmp_path / "empty"), CharTokenizer())


def test_streams_without_documents_are_skipped(tmp_path, caplog):
    (tmp_path / "toy.chunk.00.jsonl").write_text(json.dumps({"text": "only one document here"}) + "\n")
    loader = PackedLoader(args(tmp_path, streams=4, seq_len=8, batch_size=2), CharTokenizer())
    batch = next(loader)  # three of the four byte ranges hold no line at all
    assert batch.inputs.shape == (2, 8)
    assert "holds no valid document" in caplog.text
    state = merge_states([loader.state_dict()])  # the empty streams stay part of the position
    assert sorted(state["streams"]) == ["0", "1", "2", "3"] and state["tokens"] == 2 * 8
    loader.close()
    resumed = PackedLoader(args(tmp_path, streams=4, seq_len=8, batch_size=2), CharTokenizer(), state=state)
    assert next(resumed).inputs.shape == (2, 8)
    resumed.close()


def test_validation_rows_take_the_file_head_without_wrapping(tmp_path):
    docs = write_chunks(tmp_path, 1, 5)[0]
    path = tmp_path / "toy.chunk.00.jsonl"
    tok = CharTokenizer()
    total = sum(len(d) + 2 for d in docs)
    rows, starts = validation_rows(path, tok, seq_len=8, max_tokens=20)
    assert rows.shape == (math.ceil(20 / 8), 9) and starts.shape == rows.shape
    rows, _ = validation_rows(path, tok, seq_len=8, max_tokens=10**9)
    assert len(rows) == (total - 1) // 8  # every full row of one pass, no second epoch
