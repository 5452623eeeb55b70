"""`lt2 bench train` on the CPU: a tiny recipe's record has consistent numbers and a provenance sidecar that
hashes the recipe and its base. (MFU needs a known device peak: None on the CPU; the H100 runs are recorded
under results/bench/.)

Run: pytest tests/bench/test_bench_train.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lt2.cli import main

TINY = Path(__file__).parents[2] / "config" / "recipes" / "tiny"


def test_tiny_record_is_consistent_and_has_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # provenance paths are relative to the working directory
    out = tmp_path / "results" / "bench" / "train_tiny_gdn.json"
    argv = ["bench", "train", str(TINY / "looped_pure_gdn.yaml"), "train.compile=false", "data.batch_size=2",
            "train.grad_accum=2", "--steps", "3", "--warmup", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "tokens/s" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["status"] == "ok" and rec["device"] == "cpu" and rec["steps"] == 3
    assert rec["batch_size"] == 2 and rec["grad_accum"] == 2 and rec["compile"] is False
    tokens_per_step = 2 * rec["seq_len"] * 2
    assert rec["tokens_per_s"] == pytest.approx(tokens_per_step / rec["step_time_s"])
    assert rec["achieved_tflops_per_device"] == pytest.approx(rec["tokens_per_s"] * rec["train_flops_per_token"] / 1e12)
    assert rec["mfu"] is None and rec["peak_tflops"] is None  # no device peak on a CPU
    assert rec["final_loss"] > 0
    prov = json.loads(Path(f"{out}.prov.json").read_text())
    hashed = [Path(i["path"]).name for i in prov["inputs"]]
    assert hashed == ["_base.yaml", "looped_pure_gdn.yaml"]
    assert prov["config"]["train"]["compile"] is False


def test_bad_step_counts_are_refused(capsys):
    assert main(["bench", "train", str(TINY / "looped_pure_full.yaml"), "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
