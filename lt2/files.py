"""Files: atomic writes and content hashes, one copy of each for the whole package.

Atomic writes: a reader (or a job killed half-way) sees a file's old version or its complete new one. Every
writer of the package goes through here: the data stages' JSON-lines files, model and checkpoint
exports, metrics, tables, figures and provenance records. A file is written under a hidden temporary name in
the same folder (`.{name}.tmp`, so the final rename stays on one file system), flushed to disk, then renamed
over its final name; when the block fails the temporary file is removed and the exception propagates. A
stale temporary file left by a SIGKILL is simply overwritten by the next attempt.

    >>> atomic_write_text("out/table.md", "| a |\\n")
    >>> with atomic_open("out/docs.jsonl") as f:
    ...     f.write(b'{"text": "hello"}\\n')
    >>> with atomic_path("out/figure.png") as tmp:  # for writers that want a path (savefig, safetensors)
    ...     fig.savefig(tmp, format="png")
    >>> with atomic_dir("out/model") as tmp:  # a folder appears complete, replacing the old one
    ...     model.save_pretrained(tmp)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

PathLike = str | os.PathLike


def tmp_path(path: PathLike) -> Path:
    """The temporary name `path` is written under: hidden, same folder (so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def fsync_path(path: PathLike) -> None:
    """Flush a file, or a folder's entries (after a rename into it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield the temporary file name to write `path` under; rename it into place when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        fsync_path(tmp)  # the data must be on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open `path` for writing under its temporary name; rename into place only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the block succeeds it replaces `path` (renames
    only: readers see the old folder or the complete new one). On an exception the temporary folder goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
