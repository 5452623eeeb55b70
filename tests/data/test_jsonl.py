"""lt2.data.jsonl: atomic writes leave no partial file, and the reader skips and counts every kind of bad line.

Checks: a failed write leaves neither the target nor its temporary file and keeps an older version intact;
malformed lines (not JSON, not an object, no/odd "text", invalid UTF-8, a record cut short) are counted with
their locations and never yielded; byte offsets resume exactly after a record.

    pytest tests/data/test_jsonl.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lt2.data.jsonl import ReadStats, dumps_record, read_jsonl, read_jsonl_lines
from lt2.files import atomic_open
from lt2.files import tmp_path as temp_name


def test_atomic_open_commits_only_on_success(tmp_path: Path):
    path = tmp_path / "sub" / "x.jsonl"
    with atomic_open(path) as f:
        f.write(dumps_record({"text": "v1"}))
        assert not path.exists() and temp_name(path).exists()  # invisible until the block ends
    assert path.read_bytes() == b'{"text": "v1"}\n'
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b'{"text": "v2 half')
        raise RuntimeError("killed")
    assert path.read_bytes() == b'{"text": "v1"}\n'  # the old version survives a failed rewrite
    assert not temp_name(path).exists()


def test_dumps_record_is_one_utf8_line():
    line = dumps_record({"id": "a", "text": "two\nlines, naïve 数据 🙂"})
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert "naïve 数据 🙂".encode() in line  # not \\u-escaped


def test_reader_skips_and_counts_malformed(tmp_path: Path):
    good = [{"id": str(i), "text": f"doc {i}"} for i in range(4)]
    path = tmp_path / "mixed.jsonl"
    lines = [
        dumps_record(good[0]),
        b"not json at all\n",
        dumps_record(good[1]),
        b'["a", "list"]\n',
        b'{"id": "no text"}\n',
        b'{"text": 42}\n',
        b"\n",  # blank: ignored, not malformed
        b'{"text": "bad utf8 \xff\xfe"}\n',
        dumps_record(good[2]),
        dumps_record(good[3]),
        b'{"id": "cut", "text": "a writer was kil',  # truncated last line, no newline
    ]
    path.write_bytes(b"".join(lines))
    stats = ReadStats()
    records = [rec for _, rec in read_jsonl(path, stats)]
    assert records == good
    assert (stats.records, stats.malformed) == (4, 6)
    assert len(stats.examples) == 5 and stats.examples[0] == f"mixed.jsonl@{len(lines[0])}"
    assert "6 malformed lines skipped" in stats.report()


def test_offsets_resume_after_a_record(tmp_path: Path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b"".join(dumps_record({"text": f"d{i}"}) for i in range(10)))
    seen = list(read_jsonl(path))
    end_of_third = seen[2][0]
    rest = [rec["text"] for _, rec in read_jsonl(path, offset=end_of_third)]
    assert rest == [f"d{i}" for i in range(3, 10)]
    raw = [line for _, line, _ in read_jsonl_lines(path)]
    assert raw[0] == b'{"text": "d0"}'  # exact bytes, newline removed
