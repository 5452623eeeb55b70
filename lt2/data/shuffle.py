"""`lt2 data shuffle`: the terashuf contract in Python — an external-memory shuffle, then shard.

Input: every `*.jsonl` file directly under `input_dir`, in name order (download's shards). Output in `out/`:
    {dataset}.val.jsonl           the first `val_docs` documents of the shuffled stream (held out)
    {dataset}.chunk.{i:02d}.jsonl  the rest, dealt round-robin: shuffled document j goes to chunk j % nchunks
    {dataset}.shuffle.json        manifest: arguments, per-file counts, spill runs, malformed lines skipped

Algorithm (terashuf's): read lines into a buffer until it holds `memory_mb`; shuffle it and spill it to a
temporary run file; at the end, merge the runs by repeatedly taking the next line of a run chosen with
probability proportional to the lines it has left. A uniform shuffle inside each run plus that merge is a
uniform permutation of all lines, with memory bounded by one buffer (plus one label per line of the current
merge block). The merge draws a block of labels at a time from the multivariate hypergeometric distribution
(how many of the next `MERGE_BLOCK` lines come from each run) and shuffles them, which is the same
distribution as drawing line by line but keeps the per-line Python work to one readline.

Lines are copied byte for byte (only the newline is normalised). Malformed lines are counted, reported and
skipped. The output is a function of (input bytes, seed, memory_mb): same arguments, identical bytes. It
does not call a `terashuf` binary even when one is installed, so that the bytes do not depend on what
happens to be on PATH. Every output file is written under a temporary name and renamed at the end.

    >>> shuffle("data/raw/shakespeare", "data/shuffled/shakespeare", "shakespeare", nchunks=4, seed=0, val_docs=100)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lt2.data.jsonl import ReadStats, read_jsonl_lines, write_json
from lt2.files import atomic_open
from lt2.progress import Progress

logger = logging.getLogger(__name__)

LINE_OVERHEAD = 64  # bytes Python spends per buffered line (bytes header + list slot): counted against memory_mb
MERGE_BLOCK = 1 << 16  # lines whose run labels are drawn at once during the merge
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Defaults of `lt2 data shuffle` and of the workflow's `shuffle` section (its schema and config/config.yaml
# are tested to agree with these).
MEMORY_MB = 1024.0
VAL_DOCS = 64


def chunk_name(dataset: str, i: int) -> str:
    return f"{dataset}.chunk.{i:02d}.jsonl"


def val_name(dataset: str) -> str:
    return f"{dataset}.val.jsonl"


def manifest_name(dataset: str) -> str:
    return f"{dataset}.shuffle.json"


def output_files(out: str | os.PathLike, dataset: str, nchunks: int) -> list[Path]:
    """Every file a shuffle writes under `out`: the chunks, the validation file and the manifest."""
    names = [chunk_name(dataset, i) for i in range(nchunks)] + [val_name(dataset), manifest_name(dataset)]
    return [Path(out) / name for name in names]


def input_files(input_dir: Path) -> list[Path]:
    """The jsonl files a shuffle reads: `*.jsonl` directly under `input_dir`, sorted by name."""
    if not input_dir.is_dir():
        raise ValueError(f"--input {input_dir} is not a directory")
    files = sorted(p for p in input_dir.glob("*.jsonl") if p.is_file())
    if not files:
        raise ValueError(f"--input {input_dir} holds no *.jsonl files")
    return files


def _spill(lines: list[bytes], rng: np.random.Generator, tmp_dir: Path, k: int) -> Path:
    path = tmp_dir / f"run.{k:05d}"
    with open(path, "wb") as f:
        f.writelines(lines[i] + b"\n" for i in rng.permutation(len(lines)))
    return path


def _merge(runs: list[BinaryIO], counts: list[int], rng: np.random.Generator) -> Iterator[bytes]:
    """Lines of the (already shuffled) runs, uniformly interleaved: run r's next line, r drawn by lines left."""
    left = np.asarray(counts, dtype=np.int64)
    while (total := int(left.sum())) > 0:
        take = rng.multivariate_hypergeometric(left, min(MERGE_BLOCK, total), method="marginals")
        labels = np.repeat(np.arange(len(runs)), take)
        rng.shuffle(labels)
        left -= take
        for r in labels.tolist():
            yield runs[r].readline()


def check_args(dataset: str, nchunks: int, memory_mb: float, val_docs: int) -> None:
    if not _NAME.match(dataset):
        raise ValueError(f"--dataset {dataset!r} must be a file-name prefix of letters, digits, '.', '_', '-'")
    if nchunks < 1:
        raise ValueError(f"--nchunks must be >= 1, got {nchunks}")
    if not memory_mb > 0:
        raise ValueError(f"--memory-mb must be > 0, got {memory_mb}")
    if val_docs < 0:
        raise ValueError(f"--val-docs must be >= 0, got {val_docs}")


def shuffle(
    input_dir: str | os.PathLike,
    out: str | os.PathLike,
    dataset: str,
    *,
    nchunks: int,
    seed: int,
    memory_mb: float = MEMORY_MB,
    val_docs: int = VAL_DOCS,
) -> dict[str, Any]:
    """Shuffle every document under `input_dir` with `seed` in `memory_mb`, write val + chunks; return the manifest.

    Raises ValueError for bad arguments, or when the input has fewer than `val_docs + nchunks` documents (every
    chunk must hold at least one).
    """
    check_args(dataset, nchunks, memory_mb, val_docs)
    files = input_files(Path(input_dir))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    budget = memory_mb * 2**20
    stats = ReadStats()

    with tempfile.TemporaryDirectory(dir=out, prefix=".shuffle-") as tmp, contextlib.ExitStack() as stack:
        # Pass 1: fill the buffer, shuffle and spill it whenever it reaches the memory bound.
        run_paths: list[Path] = []
        counts: list[int] = []
        buffer: list[bytes] = []
        used = 0
        with Progress(f"shuffle {dataset}: read", unit="doc") as bar:
            for path in files:
                for _, line, _ in read_jsonl_lines(path, stats):
                    buffer.append(line)
                    used += len(line) + LINE_OVERHEAD
                    bar.update()
                    if used >= budget:
                        run_paths.append(_spill(buffer, rng, Path(tmp), len(run_paths)))
                        counts.append(len(buffer))
                        buffer, used = [], 0
        if stats.malformed:
            logger.warning("%s: %s", dataset, stats.report())
        total = stats.records
        if total < val_docs + nchunks:
            raise ValueError(
                f"{input_dir} has {total} documents: too few for --val-docs {val_docs} plus one per chunk "
                f"(--nchunks {nchunks})"
            )

        # Pass 2: the shuffled stream. One buffer never spilled is simply permuted in memory.
        if not run_paths:
            stream: Iterator[bytes] = (buffer[i] + b"\n" for i in rng.permutation(len(buffer)))
        else:
            if buffer:
                run_paths.append(_spill(buffer, rng, Path(tmp), len(run_paths)))
                counts.append(len(buffer))
            buffer = []
            runs = [stack.enter_context(open(p, "rb", buffering=1 << 20)) for p in run_paths]
            stream = _merge(runs, counts, rng)

        val = stack.enter_context(atomic_open(out / val_name(dataset)))
        chunks = [stack.enter_context(atomic_open(out / chunk_name(dataset, i))) for i in range(nchunks)]
        chunk_docs = [0] * nchunks
        with Progress(f"shuffle {dataset}: write ({len(run_paths)} runs)", total=total, unit="doc") as bar:
            for j, line in enumerate(stream):
                if j < val_docs:
                    val.write(line)
                else:
                    i = (j - val_docs) % nchunks
                    chunks[i].write(line)
                    chunk_docs[i] += 1
                bar.update()
    # Leaving the ExitStack renamed every output into place (or removed them all on an error).

    manifest = {
        "dataset": dataset,
        "seed": seed,
        "memory_mb": memory_mb,
        "inputs": [p.name for p in files],
        "docs": total,
        "malformed_lines": stats.malformed,
        "malformed_examples": stats.examples,
        "runs": max(len(run_paths), 1),
        "val": {"file": val_name(dataset), "docs": min(val_docs, total)},
        "chunks": [{"file": chunk_name(dataset, i), "docs": n} for i, n in enumerate(chunk_docs)],
    }
    write_json(out / manifest_name(dataset), manifest)
    return manifest
