"""Fixtures for lt2.data tests: jsonl inputs, and local copies of Hub dataset repositories laid out like the Hub's.

A Hub snapshot here is what `huggingface-cli download --repo-type dataset` would leave: the README.md whose
YAML `configs` map config names to data files, and the parquet files under the same paths as upstream
(FineWeb-Edu: `sample/10BT/*.parquet` for config sample-10BT, `data/<dump>/*.parquet` for the default).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

FINEWEB_README = """---
license: odc-by
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*/*
- config_name: sample-10BT
  data_files:
  - split: train
    path: sample/10BT/*
---
# FineWeb-Edu (local test snapshot)
"""


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def fineweb_rows(texts: list[str]) -> list[dict]:
    """FineWeb-Edu's columns (text, id, dump, url, score, token_count) around the given texts."""
    return [
        {
            "text": t,
            "id": f"<urn:uuid:{i:08d}-0000-4000-8000-000000000000>",
            "dump": "CC-MAIN-2024-10",
            "url": f"https://example.org/{i}",
            "score": 3.5,
            "token_count": len(t.split()),
        }
        for i, t in enumerate(texts)
    ]


def make_fineweb_snapshot(root: Path, texts: list[str], files: int = 3) -> Path:
    """A local FineWeb-Edu repository: README configs + the texts split over `files` parquet files per config."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = fineweb_rows(texts)
    per_file = -(-len(rows) // files)
    for k in range(files):
        table = pa.Table.from_pylist(rows[k * per_file : (k + 1) * per_file])
        for rel in (f"sample/10BT/{k:03d}_00000.parquet", f"data/CC-MAIN-2024-10/train-{k:05d}-of-{files:05d}.parquet"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / rel, row_group_size=37)  # odd row groups: resume lands mid-group
    (root / "README.md").write_text(FINEWEB_README)
    return root


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """`n` distinct documents of uneven length (20 to ~2000 chars), with non-ASCII text and newlines."""
    import random

    rng = random.Random(seed)
    words = ["loop", "état", "数据", "token", "naïve", "recurrent", "state", "🙂", "window", "attention"]
    return [f"doc {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 300))) + "\n--\n" for i in range(n)]


@pytest.fixture
def fineweb_jsonl(shared_data: Path) -> Path:
    """The real FineWeb-Edu sample-10BT slice (250 documents, text only); skips when shared data is absent."""
    path = shared_data / "fineweb_edu_sample" / "fineweb_edu_sample10BT_250docs.jsonl"
    if not path.is_file():
        pytest.skip(f"{path.name} not in the shared data folder")
    return path


@pytest.fixture
def fineweb_texts(fineweb_jsonl: Path) -> list[str]:
    with open(fineweb_jsonl, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


@pytest.fixture
def fineweb_snapshot(tmp_path: Path, fineweb_texts: list[str]) -> Path:
    """The real sample laid out as a local copy of HuggingFaceFW/fineweb-edu."""
    return make_fineweb_snapshot(tmp_path / "hub" / "fineweb-edu", fineweb_texts)


@pytest.fixture
def synthetic_snapshot(tmp_path: Path) -> Path:
    """A FineWeb-Edu-shaped snapshot of 300 synthetic documents: needs no shared data."""
    return make_fineweb_snapshot(tmp_path / "hub" / "synthetic", synthetic_texts(300))


@pytest.fixture
def jsonl_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write records to tmp_path/<name> and return the path."""
    return lambda name, records: write_jsonl(tmp_path / name, records)


@pytest.fixture
def snapshot_factory(tmp_path: Path) -> Callable[..., Path]:
    """`snapshot_factory(name, texts, files=3)`: a FineWeb-Edu-shaped local repository of `texts`."""
    return lambda name, texts, files=3: make_fineweb_snapshot(tmp_path / "hub" / name, texts, files)


@pytest.fixture
def texts_factory() -> Callable[..., list[str]]:
    """`texts_factory(n, seed=0)`: distinct synthetic documents (see synthetic_texts)."""
    return synthetic_texts
