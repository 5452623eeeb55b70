"""JSON-lines files: an atomic writer and a tolerant reader that counts malformed lines.

Record contract shared by every stage of lt2.data (download, shuffle, tokenizer, loader): one JSON object
per line, UTF-8, newline-terminated, with at least `{"text": str}`; download also writes `{"id": str}`.

Writers never leave a half-written file under its final name (lt2.files: `.{name}.tmp` in the same
folder, renamed into place only when the block succeeds). A reader that meets a bad line (not JSON, not
an object, no string "text", invalid UTF-8, a record cut short by a killed writer) counts it in a
`ReadStats` and moves on, so one bad line never fails a multi-hour job.

    >>> with lt2.files.atomic_open(Path("docs.jsonl")) as f:
    ...     f.write(dumps_record({"id": "a", "text": "hello"}))
    >>> [rec["text"] for _, rec in read_jsonl(Path("docs.jsonl"))]
    ['hello']
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lt2.files import atomic_open

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 5  # malformed-line locations kept for the report; the count is always exact


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write a small JSON document (manifest, metadata) atomically, keys sorted for stable diffs."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def dumps_record(record: dict[str, Any]) -> bytes:
    """One record as a JSON line: compact, UTF-8 (not \\u-escaped), newline-terminated."""
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one line (without its newline), or None if the line breaks the record contract."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    return record


@dataclass
class ReadStats:
    """Counts kept while reading: good records, malformed lines, and where the first few bad ones were."""

    records: int = 0
    malformed: int = 0
    examples: list[str] = field(default_factory=list)  # "file@byte_offset" of the first MAX_EXAMPLES

    def add_malformed(self, path: Path, offset: int) -> None:
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{path.name}@{offset}")

    def report(self) -> str:
        """One line for logs: how many lines were skipped and where the first ones were."""
        where = f" (first at {', '.join(self.examples)})" if self.examples else ""
        return f"{self.records} records, {self.malformed} malformed lines skipped{where}"


def read_jsonl_lines(
    path: str | os.PathLike, stats: ReadStats | None = None, offset: int = 0
) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """Yield `(end_offset, raw_line, record)` for every good line of `path`, starting at byte `offset`.

    `raw_line` is the line's exact bytes without the newline (shuffle copies it verbatim); `end_offset` is the
    byte offset just past the line, so `offset=end_offset` resumes right after that record. Blank lines are
    ignored; malformed lines are counted in `stats` and skipped.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb") as f:
        f.seek(offset)
        pos = offset
        for line in f:
            start, pos = pos, pos + len(line)
            body = line.rstrip(b"\r\n")
            if not body.strip():
                continue
            record = parse_record(body)
            if record is None:
                stats.add_malformed(path, start)
                continue
            stats.records += 1
            yield pos, body, record


def read_jsonl(
    path: str | os.PathLike, stats: ReadStats | None = None, offset: int = 0
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(end_offset, record)` for every good line of `path` from byte `offset` (see read_jsonl_lines).

    >>> for end, rec in read_jsonl("fineweb_edu.chunk.00.jsonl", offset=saved_offset):
    ...     tokens = tok.encode(rec["text"], bos=True, eos=True)
    """
    for end, _, record in read_jsonl_lines(path, stats, offset):
        yield end, record
