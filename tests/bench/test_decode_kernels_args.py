"""`lt2 bench decode-kernels` (one CLI with the other benchmarks): its argument checks run before any work
and before a provenance record is opened, so a bad call writes nothing.

The timing itself needs CUDA (`lt2 bench decode-kernels --out FILE` on a GPU; tests/gpu checks the kernels).

Run: pytest tests/bench/test_decode_kernels_args.py
"""

from __future__ import annotations

import pytest
import torch

from lt2.cli import main


def test_lengths_beyond_the_cache_are_named(tmp_path, capsys):
    out = tmp_path / "k.json"
    assert main(["bench", "decode-kernels", "--out", str(out), "--lengths", "1k,8k", "--max-len", "4096"]) == 2
    assert "lengths [1024, 8192] exceed --max-len 4096" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_no_cuda_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "k.json"
    assert main(["bench", "decode-kernels", "--out", str(out), "--batch", "1", "--lengths", "1k"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
