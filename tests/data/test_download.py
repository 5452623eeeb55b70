"""lt2.data.download: the Hub streaming path on local snapshots, atomic shards, and resume after an interrupt.

Checks: `fineweb_edu_10bt` / `fineweb_edu` read the right config of a local FineWeb-Edu repository laid out
like the Hub's (the real 250-document sample when shared data is present, synthetic documents otherwise),
in stream order, with the upstream ids and `--limit`; an interrupted download leaves only committed shards,
and re-running writes exactly the missing records (it resumes from the saved stream position, it does not
restart) and ends byte-identical to an uninterrupted run; a finished download is a no-op, a different
one into the same folder is refused; DCLM's layout (jsonl.zst, no README configs) gets positional ids.

    pytest tests/data/test_download.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lt2.data.download as dl
from lt2.data.download import download


def read_out(out: Path, dataset: str) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob(f"{dataset}.*.jsonl")) for line in p.open(encoding="utf-8")]


def test_hub_path_on_real_fineweb_sample(fineweb_snapshot: Path, fineweb_texts: list[str], tmp_path: Path):
    out = tmp_path / "raw"
    m = download("fineweb_edu_10bt", out, limit=200, from_dir=fineweb_snapshot, docs_per_shard=64)
    records = read_out(out, "fineweb_edu_10bt")
    assert [r["text"] for r in records] == fineweb_texts[:200]  # stream order, text untouched
    assert records[0]["id"] == "<urn:uuid:00000000-0000-4000-8000-000000000000>"  # upstream id column
    assert [s["docs"] for s in m["shards"]] == [64, 64, 64, 8] and m["docs"] == 200
    assert m["source"]["config"] == "sample-10BT"
    assert sorted(p.name for p in out.iterdir()) == [
        *(f"fineweb_edu_10bt.{k:05d}.jsonl" for k in range(4)),
        "fineweb_edu_10bt.download.json",
    ]


def test_default_config_and_whole_stream(snapshot_factory, texts_factory, tmp_path: Path):
    texts = texts_factory(90)
    snap = snapshot_factory("fw", texts)
    m = download("fineweb_edu", tmp_path / "raw", from_dir=snap, docs_per_shard=40)  # no limit: to the end
    assert [r["text"] for r in read_out(tmp_path / "raw", "fineweb_edu")] == texts
    assert [s["docs"] for s in m["shards"]] == [40, 40, 10] and m["source"]["config"] is None


def interrupt_after(monkeypatch, n_records: int) -> list[int]:
    """Make the n-th record write raise KeyboardInterrupt (a Ctrl-C mid-shard); returns the write counter."""
    real, calls = dl.dumps_record, [0]

    def dumps(record):
        calls[0] += 1
        if calls[0] == n_records:
            raise KeyboardInterrupt
        return real(record)

    monkeypatch.setattr(dl, "dumps_record", dumps)
    return calls


def count_writes(monkeypatch) -> list[int]:
    real, calls = dl.dumps_record, [0]

    def dumps(record):
        calls[0] += 1
        return real(record)

    monkeypatch.setattr(dl, "dumps_record", dumps)
    return calls


def test_resume_after_interrupt_gives_each_record_once(synthetic_snapshot: Path, tmp_path: Path):
    args = dict(limit=250, from_dir=synthetic_snapshot, docs_per_shard=60)
    download("fineweb_edu_10bt", tmp_path / "clean", **args)
    clean = {p.name: p.read_bytes() for p in (tmp_path / "clean").glob("*.jsonl")}

    out = tmp_path / "resumed"
    with pytest.MonkeyPatch.context() as mp:
        interrupt_after(mp, 150)  # 2 shards of 60 committed, the third cut at record 30
        with pytest.raises(KeyboardInterrupt):
            download("fineweb_edu_10bt", out, **args)
    assert sorted(p.name for p in out.glob("*.jsonl")) == [
        "fineweb_edu_10bt.00000.jsonl",
        "fineweb_edu_10bt.00001.jsonl",
    ]
    assert not (out / "fineweb_edu_10bt.download.json").exists()
    # A SIGKILL would also leave the temporary file of the shard in flight, cut mid-record.
    (out / ".fineweb_edu_10bt.00002.jsonl.tmp").write_bytes(b'{"id": "x", "text": "half a rec')

    with pytest.MonkeyPatch.context() as mp:
        writes = count_writes(mp)
        m = download("fineweb_edu_10bt", out, **args)
    assert writes[0] == 250 - 120  # resumed after the committed shards instead of starting over
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == clean
    assert m["docs"] == 250 and not list(out.glob(".*"))

    with pytest.MonkeyPatch.context() as mp:
        writes = count_writes(mp)
        assert download("fineweb_edu_10bt", out, **args)["docs"] == 250  # finished: nothing to do
    assert writes[0] == 0
    with pytest.raises(ValueError, match="holds a download made with"):
        download("fineweb_edu_10bt", out, **(args | {"limit": 300}))


def test_dclm_layout_jsonl_zst_positional_ids(tmp_path: Path, texts_factory):
    zstd = pytest.importorskip("zstandard")
    texts = texts_factory(30)
    shard = tmp_path / "dclm" / "global-shard_01_of_10" / "local-shard_0_of_10" / "shard_00000000_processed.jsonl.zst"
    shard.parent.mkdir(parents=True)
    records = [{"text": t, "url": f"https://e.org/{i}", "warcinfo": "w"} for i, t in enumerate(texts)]
    lines = "".join(json.dumps(r) + "\n" for r in records)
    shard.write_bytes(zstd.ZstdCompressor().compress(lines.encode()))
    download("dclm_baseline_1.0", tmp_path / "raw", limit=25, from_dir=tmp_path / "dclm")
    records = read_out(tmp_path / "raw", "dclm_baseline_1.0")
    assert [r["text"] for r in records] == texts[:25]
    assert [r["id"] for r in records[:2]] == ["dclm_baseline_1.0/0", "dclm_baseline_1.0/1"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="fineweb"), "unknown dataset 'fineweb'; choose one of dclm_baseline_1.0, fineweb_edu, "),
        (dict(limit=0), "--limit must be >= 1"),
        (dict(docs_per_shard=0), "--docs-per-shard must be >= 1"),
        (dict(from_dir="does/not/exist"), "--from-dir does/not/exist is not a directory"),
    ],
    ids=["dataset", "limit", "shard-size", "from-dir"],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str):
    args = dict(dataset="fineweb_edu_10bt", out=tmp_path / "raw", from_dir=tmp_path) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        download(**args)
