"""`lt2 data download|shuffle|tokenizer` end to end on small inputs, and their one-line user errors.

Checks: the three commands chained as the workflow calls them (download from a local Hub snapshot ->
shuffle -> BPE) produce the documented files, every downloaded document lands exactly once in val or a
chunk, and the tokenizer loads and encodes them; bad values exit with status 2 and one line on stderr that
names the value and the choices, without a traceback.

    pytest tests/data/test_cli_data.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lt2.cli import main
from lt2.data.tokenizer import Tokenizer


def texts_of(paths: list[Path]) -> list[str]:
    return [json.loads(line)["text"] for p in paths for line in p.open(encoding="utf-8")]


def test_download_shuffle_tokenizer_chain(snapshot_factory, texts_factory, tmp_path: Path, capsys):
    texts = texts_factory(150)
    snap = snapshot_factory("fineweb-edu", texts)
    raw, shuf, tok_dir = tmp_path / "raw", tmp_path / "shuf", tmp_path / "tok"

    argv = ["data", "download", "--dataset", "fineweb_edu_10bt", "--out", str(raw), "--limit", "120"]
    assert main([*argv, "--from-dir", str(snap), "--docs-per-shard", "50"]) == 0
    assert "fineweb_edu_10bt: 120 documents in 3 shards" in capsys.readouterr().out

    argv = ["data", "shuffle", "--input", str(raw), "--out", str(shuf), "--dataset", "fineweb_edu_10bt"]
    assert main([*argv, "--nchunks", "3", "--seed", "0", "--val-docs", "12", "--memory-mb", "0.02"]) == 0
    assert "120 documents -> 12 val + 3 chunks" in capsys.readouterr().out
    chunk_files = sorted(shuf.glob("fineweb_edu_10bt.chunk.*.jsonl"))
    assert [p.name for p in chunk_files] == [f"fineweb_edu_10bt.chunk.{i:02d}.jsonl" for i in range(3)]
    shuffled = texts_of([*chunk_files, shuf / "fineweb_edu_10bt.val.jsonl"])
    assert Counter(shuffled) == Counter(texts[:120])

    argv = ["data", "tokenizer", "--kind", "bpe", "--input", str(shuf), "--vocab-size", "400", "--out", str(tok_dir)]
    assert main(argv) == 0
    assert "bpe tokenizer in" in capsys.readouterr().out
    tok = Tokenizer.load(tok_dir)
    assert tok.vocab_size == 400 and (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert all(tok.decode(ids) == t for ids, t in zip(tok.encode_batch(shuffled[:20]), shuffled[:20]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["download", "--dataset", "c4", "--out", "o"], "unknown dataset 'c4'; choose one of dclm_baseline_1.0,"),
        (["shuffle", "--input", "i", "--out", "o", "--dataset", "x", "--nchunks", "0", "--seed", "1"], "--nchunks"),
        (["shuffle", "--input", "missing", "--out", "o", "--dataset", "x", "--nchunks", "2", "--seed", "1"], "missing"),
        (["tokenizer", "--kind", "hf", "--out", "o"], "--kind hf needs --name"),
    ],
    ids=["dataset", "nchunks", "input-dir", "hf-name"],
)
def test_user_errors_are_one_line(argv: list[str], message: str, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "lt2.cli", "data", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lt2 data: error: ") and message in lines[0], proc.stderr
