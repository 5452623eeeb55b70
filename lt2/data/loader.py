"""Packed, resumable training batches from the shuffled chunk files.

Streams. The chunk files `{dataset}.chunk.{i:02d}.jsonl` are cut into `n_streams` line-aligned byte ranges
(each file into n_streams / n_chunks parts). Stream s belongs to data-parallel rank s % world_size, so
every chunk is read by some rank whatever the world size: nothing is dropped when chunks < ranks (files
are split) or chunks > ranks (a rank reads several streams), unlike the reference loader, which drops the
chunks beyond the world size.

Packing. A stream reads its documents in file order, encodes each as [BOS] text [EOS] and concatenates
them into one token sequence that is cut into rows of seq_len + 1 tokens; consecutive rows share one token
(the last of a row is the first of the next), so every token of the stream is a target exactly once.
inputs = row[:-1], targets = row[1:]. With `doc_mask`, doc_start[b, t] marks the tokens where a document
begins (its BOS), which `LoopedLM.forward(tokens, doc_start)` turns into document boundaries. A stream that
reaches the end of its byte range wraps around (epoch + 1) without dropping its leftover tokens.

Batches. A rank's micro-batch takes `batch_size` rows, each from whichever of its streams has emitted the
fewest rows so far (ties: lowest stream id), which is round-robin while all streams have data.

Position. The loader's state is, per stream, where its oldest still-buffered document starts (epoch, byte
offset, documents and malformed lines before it) and how many of that document's tokens were already
consumed, plus the rows emitted. This is independent of the world size: a run resumed on a different
number of ranks reassigns the streams (s % world_size) and continues every stream exactly where it stood,
so no sample is lost or repeated. The global token offset (sum of rows * seq_len) is recorded alongside.
Resuming fails with a message when the files, seq_len or tokenizer changed, or when there are more ranks
than streams. Everything is deterministic: the batches depend only on the files, n_streams, seq_len,
batch_size, world size and tokenizer.

Malformed lines (not JSON, no string "text", invalid UTF-8) are counted per stream, logged (the first few,
with their byte offset) and skipped.

    >>> loader = PackedLoader(recipe.data, Tokenizer.load(recipe.data.tokenizer), rank=0, world_size=1)
    >>> batch = next(loader)          # batch.inputs [B, T] long, batch.targets [B, T], batch.doc_start
    >>> state = loader.state_dict()   # per-rank part; merge_states(...) makes the global position
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from lt2.data.args import DataArgs
from lt2.data.jsonl import parse_record

logger = logging.getLogger(__name__)

STATE_SCHEMA = 1
CHUNK_PATTERN = re.compile(r"^(?P<dataset>.+)\.chunk\.(?P<index>\d+)\.jsonl$")
READ_BATCH = 64  # documents tokenized together (encode_batch runs them on Rust threads)
MAX_WARNINGS = 5  # malformed-line warnings logged per stream; the count is always exact


class TokenizerLike(Protocol):
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode_batch(self, texts: list[str], bos: bool = False, eos: bool = False) -> list[list[int]]: ...


# ----------------------------------------------------------------------------------------- files
def find_chunks(train_dir: str | Path) -> list[Path]:
    """The chunk files of `train_dir`, sorted by (dataset, chunk index)."""
    root = Path(train_dir)
    if not root.is_dir():
        raise ValueError(f"data.train_dir {str(root)!r} is not a directory")
    found = []
    for path in root.iterdir():
        m = CHUNK_PATTERN.match(path.name)
        if m and path.is_file():
            found.append((m["dataset"], int(m["index"]), path))
    if not found:
        raise ValueError(f"data.train_dir {str(root)!r} holds no `{{dataset}}.chunk.{{i:02d}}.jsonl` files")
    return [p for _, _, p in sorted(found)]


def default_streams(n_chunks: int, world_size: int) -> int:
    """The smallest multiple of n_chunks that world_size divides: every rank gets the same number of streams."""
    return n_chunks * (world_size // math.gcd(n_chunks, world_size))


def _line_start_at_or_after(f, position: int) -> int:
    """Byte offset of the first line that starts at or after `position`."""
    if position == 0:
        return 0
    f.seek(position - 1)
    f.readline()  # finishes the line that holds byte position - 1
    return f.tell()


def split_file(path: Path, parts: int) -> list[tuple[int, int]]:
    """`parts` line-aligned byte ranges [start, end) covering the file; a line belongs to the range of its 1st byte."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        starts = [_line_start_at_or_after(f, size * j // parts) for j in range(parts)]
    return list(zip(starts, [*starts[1:], size]))


@dataclass(frozen=True)
class StreamSpec:
    path: Path
    start: int  # first byte of the range (a line start)
    end: int  # one past the last byte


def stream_specs(files: list[Path], n_streams: int) -> list[StreamSpec]:
    """Stream s is part s % parts of file s // parts (parts = n_streams / n_files)."""
    if n_streams % len(files):
        raise ValueError(f"data.streams={n_streams} must be a multiple of the number of chunk files ({len(files)})")
    parts = n_streams // len(files)
    return [StreamSpec(path, a, b) for path in files for a, b in split_file(path, parts)]


# ---------------------------------------------------------------------------------------- stream
@dataclass(frozen=True)
class Cursor:
    """Where a reader stands: the next line's byte offset in `epoch`, and what it read before it."""

    epoch: int = 0
    offset: int = 0
    docs: int = 0
    malformed: int = 0


class _Doc(NamedTuple):
    tokens: np.ndarray  # int32 [n]: BOS, text, EOS
    cursor: Cursor  # reader position just before this document's line


class StreamEmpty(Exception):
    """A stream's byte range holds no valid document."""


class DocStream:
    """Documents of one byte range -> packed rows of seq_len + 1 tokens (see the module docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        tokenizer: TokenizerLike,
        seq_len: int,
        state: dict[str, int] | None = None,
        wrap: bool = True,
        name: str = "",
    ):
        self.spec, self.tokenizer, self.seq_len, self.wrap = spec, tokenizer, seq_len, wrap
        self.name = name or f"{spec.path.name}@{spec.start}"
        self.pending: deque[_Doc] = deque()
        self.head = 0  # tokens of pending[0] already consumed (its shared last token counts as not consumed)
        self.available = 0  # tokens in `pending` from `head` on
        self.rows = 0
        self.cursor = Cursor(offset=spec.start)
        self._file = open(spec.path, "rb")  # noqa: SIM115 - lives as long as the stream; closed in close()
        self._file_pos = -1
        self._full_pass = True  # this pass started at the range start (so an empty pass means an empty range)
        self._docs_this_pass = 0
        if state is not None:
            self.cursor = Cursor(state["epoch"], state["offset"], state["docs"], state["malformed"])
            self.rows = state["rows"]
            self._full_pass = self.cursor.offset == spec.start
            skip = state["skip"]
            try:
                while self.available <= skip:  # re-read the buffered documents, then drop what was consumed
                    if not self._read():
                        raise ValueError(f"{self.name}: checkpointed position lies beyond the end of its file")
            except (StreamEmpty, ValueError):
                self.close()
                raise
            self._consume(skip)

    def close(self) -> None:
        self._file.close()

    def state(self) -> dict[str, int]:
        """Position as plain ints (JSON-able): the oldest buffered document's cursor and tokens skipped in it."""
        cursor, skip = (self.pending[0].cursor, self.head) if self.pending else (self.cursor, 0)
        return {**asdict(cursor), "skip": skip, "rows": self.rows}

    def _read_line(self) -> tuple[Cursor, bytes] | None:
        """(cursor before the line, the line) of the next line of the range; wraps, or None at a non-wrapping end."""
        if self.cursor.offset >= self.spec.end:
            if self._full_pass and self._docs_this_pass == 0:
                raise StreamEmpty(self.name)
            if not self.wrap:
                return None
            self.cursor = replace(self.cursor, epoch=self.cursor.epoch + 1, offset=self.spec.start)
            self._full_pass, self._docs_this_pass = True, 0
        at = self.cursor
        if self._file_pos != at.offset:
            self._file.seek(at.offset)
        line = self._file.readline()
        self._file_pos = at.offset + len(line)
        self.cursor = replace(at, offset=self._file_pos)
        return at, line

    def _read(self) -> bool:
        """Read up to READ_BATCH documents into `pending`; False when a non-wrapping stream is exhausted."""
        texts, cursors = [], []
        while len(texts) < READ_BATCH:
            if texts and self.cursor.offset >= self.spec.end:
                break  # wrap in the next call: a tiny range must not be read many epochs ahead
            item = self._read_line()
            if item is None:
                break
            at, line = item
            body = line.rstrip(b"\r\n")
            if not body.strip():
                continue  # blank lines are not records
            record = parse_record(body)
            if record is None:
                if self.cursor.malformed < MAX_WARNINGS:
                    logger.warning("malformed record skipped: %s@%d", self.spec.path.name, at.offset)
                self.cursor = replace(self.cursor, malformed=self.cursor.malformed + 1)
                continue
            if not record["text"]:
                continue  # an empty document would only add BOS EOS
            texts.append(record["text"])
            cursors.append(at)
            self.cursor = replace(self.cursor, docs=self.cursor.docs + 1)
            self._docs_this_pass += 1
        if not texts:
            return False
        for ids, cursor in zip(self.tokenizer.encode_batch(texts, bos=True, eos=True), cursors):
            tokens = np.asarray(ids, dtype=np.int32)
            self.pending.append(_Doc(tokens, cursor))
            self.available += len(tokens)
        return True

    def _consume(self, n: int) -> None:
        self.head += n
        self.available -= n
        while self.pending and self.head >= len(self.pending[0].tokens):
            self.head -= len(self.pending.popleft().tokens)

    def next_row(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(tokens int32 [seq_len + 1], doc_start bool [seq_len + 1]), or None at the end of a non-wrapping stream."""
        need = self.seq_len + 1
        while self.available < need:
            if not self._read():
                return None
        tokens = np.empty(need, dtype=np.int32)
        starts = np.zeros(need, dtype=bool)
        pos, head = 0, self.head
        for doc in self.pending:
            if pos == need:
                break
            take = min(len(doc.tokens) - head, need - pos)
            tokens[pos : pos + take] = doc.tokens[head : head + take]
            starts[pos] = head == 0
            pos, head = pos + take, 0
        self._consume(self.seq_len)  # the row's last token stays: it is the next row's first input
        self.rows += 1
        return tokens, starts


# ----------------------------------------------------------------------------------------- batch
@dataclass
class Batch:
    inputs: torch.Tensor  # [B, T] long
    targets: torch.Tensor  # [B, T] long
    doc_start: torch.Tensor | None  # [B, T] bool when doc_mask
    fingerprint: int  # sum of the rows' 48-bit hashes: checks that runs consume the same rows

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=device.type == "cuda")

        return Batch(move(self.inputs), move(self.targets), move(self.doc_start), self.fingerprint)


def row_hash(row: np.ndarray) -> int:
    """48-bit hash of a row's tokens (sums of these stay exact in int64 across ranks and steps)."""
    return int.from_bytes(hashlib.blake2b(row.astype("<i4").tobytes(), digest_size=6).digest(), "little")


def make_batch(rows: list[np.ndarray], starts: list[np.ndarray], doc_mask: bool, pin: bool = False) -> Batch:
    tokens = torch.from_numpy(np.stack(rows)).long()  # [B, T+1]
    doc_start = torch.from_numpy(np.stack(starts))[:, :-1].contiguous() if doc_mask else None
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    if pin:  # page-locked host memory lets the copy to the GPU overlap with compute
        inputs, targets = inputs.pin_memory(), targets.pin_memory()
        doc_start = doc_start.pin_memory() if doc_start is not None else None
    return Batch(inputs, targets, doc_start, sum(row_hash(r) for r in rows))


# ---------------------------------------------------------------------------------------- loader
def merge_states(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The global position from every rank's `state_dict()`: all streams, and tokens = sum(rows) * seq_len."""
    meta = {k: v for k, v in parts[0].items() if k != "streams"}
    streams: dict[str, dict[str, int]] = {}
    for part in parts:
        streams.update(part["streams"])
    if len(streams) != meta["n_streams"]:
        raise AssertionError(f"ranks hold {len(streams)} of {meta['n_streams']} streams")
    tokens = sum(s["rows"] for s in streams.values()) * meta["seq_len"]
    return {**meta, "streams": dict(sorted(streams.items(), key=lambda kv: int(kv[0]))), "tokens": tokens}


class PackedLoader:
    """Iterator of a rank's micro-batches with a resumable, world-size-independent position."""

    def __init__(
        self,
        args: DataArgs,
        tokenizer: TokenizerLike,
        rank: int = 0,
        world_size: int = 1,
        state: dict[str, Any] | None = None,
        pin_memory: bool = False,
    ):
        files = find_chunks(args.train_dir)
        self.args, self.rank, self.world_size, self.pin_memory = args, rank, world_size, pin_memory
        files_meta = [{"name": p.name, "bytes": p.stat().st_size} for p in files]
        tok_meta = {"vocab_size": tokenizer.vocab_size, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
        if state is None:
            n_streams = args.streams or default_streams(len(files), world_size)
        else:
            n_streams = state["n_streams"]
            _check_resume(state, args, files_meta, tok_meta)
        if n_streams < world_size:
            raise ValueError(
                f"{world_size} ranks but only {n_streams} data streams"
                + (" (fixed by the checkpoint)" if state else " (data.streams)")
                + f": run on at most {n_streams} ranks, or start a new run with data.streams >= {world_size}"
            )
        if n_streams % world_size:
            logger.warning(
                "%d data streams over %d ranks: some ranks read more streams than others", n_streams, world_size
            )
        specs = stream_specs(files, n_streams)
        self.meta = {
            "schema": STATE_SCHEMA,
            "n_streams": n_streams,
            "seq_len": args.seq_len,
            "files": files_meta,
            "tokenizer": tok_meta,
        }
        saved = state["streams"] if state else {}
        self.streams: dict[int, DocStream] = {}
        self.empty: dict[str, dict[str, int]] = {}  # states of streams found empty (they never move)
        for s in range(rank, n_streams, world_size):
            try:
                self.streams[s] = DocStream(specs[s], tokenizer, args.seq_len, saved.get(str(s)), name=f"stream {s}")
            except StreamEmpty:  # found empty before the checkpoint, when its state was taken
                self.empty[str(s)] = saved[str(s)]
        self._state = {str(s): st.state() for s, st in self.streams.items()}
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if args.prefetch > 0:
            self._queue = queue.Queue(maxsize=args.prefetch)
            self._thread = threading.Thread(target=self._produce_forever, name="lt2-loader", daemon=True)
            self._thread.start()

    def _next_row(self) -> tuple[np.ndarray, np.ndarray]:
        while self.streams:
            s = min(self.streams, key=lambda k: (self.streams[k].rows, k))
            try:
                return self.streams[s].next_row()
            except StreamEmpty:
                logger.warning("data stream %d holds no valid document; this rank skips it", s)
                stream = self.streams.pop(s)
                self.empty[str(s)] = stream.state()  # still part of the position (it never moves)
                stream.close()
        raise ValueError(
            f"rank {self.rank} has no data: all its streams are empty (too many data.streams for these files?)"
        )

    def _produce(self) -> tuple[Batch, dict[str, dict[str, int]]]:
        rows, starts = zip(*(self._next_row() for _ in range(self.args.batch_size)))
        batch = make_batch(list(rows), list(starts), self.args.doc_mask, self.pin_memory)
        return batch, {**self.empty, **{str(s): st.state() for s, st in self.streams.items()}}

    def _produce_forever(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._produce()
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # handed to the training thread, which re-raises it
            self._queue.put(err)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._queue is None:
            batch, self._state = self._produce()
            return batch
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def state_dict(self) -> dict[str, Any]:
        """This rank's part of the position, as of the last batch returned (prefetched batches excluded)."""
        return {**self.meta, "streams": dict(self._state)}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for stream in self.streams.values():
            stream.close()


def _check_resume(state: dict[str, Any], args: DataArgs, files: list[dict], tok: dict[str, int]) -> None:
    if state.get("schema") != STATE_SCHEMA:
        raise ValueError(f"checkpoint data position has schema {state.get('schema')}, this loader reads {STATE_SCHEMA}")
    if state["seq_len"] != args.seq_len:
        raise ValueError(
            f"data.seq_len={args.seq_len} but the checkpoint packed rows of {state['seq_len']} tokens; "
            "resume with the same seq_len (or start a new run)"
        )
    if args.streams and args.streams != state["n_streams"]:
        raise ValueError(f"data.streams={args.streams} but the checkpoint has {state['n_streams']} streams")
    if state["files"] != files:
        raise ValueError(
            f"the chunk files in {args.train_dir} changed since the checkpoint (names or sizes differ): "
            "the saved position would point into different documents; restore the files or start a new run"
        )
    if state["tokenizer"] != tok:
        raise ValueError(f"tokenizer {args.tokenizer} differs from the checkpoint's ({state['tokenizer']} vs {tok})")


# ------------------------------------------------------------------------------------ validation
def validation_rows(
    path: str | Path, tokenizer: TokenizerLike, seq_len: int, max_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ceil(max_tokens / seq_len) packed rows of a held-out file (fewer if it is shorter).

    Returns (tokens int32 [N, seq_len + 1], doc_start bool [N, seq_len + 1]); the same packing as training.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data.val_file {str(path)!r} does not exist")
    stream = DocStream(StreamSpec(path, 0, path.stat().st_size), tokenizer, seq_len, wrap=False, name=path.name)
    rows, starts = [], []
    try:
        while len(rows) * seq_len < max_tokens and (row := stream.next_row()) is not None:
            rows.append(row[0])
            starts.append(row[1])
    except StreamEmpty:
        pass
    finally:
        stream.close()
    if not rows:
        raise ValueError(f"data.val_file {str(path)!r} holds fewer than seq_len + 1 = {seq_len + 1} tokens")
    return np.stack(rows), np.stack(starts)
