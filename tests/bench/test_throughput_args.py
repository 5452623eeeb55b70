"""`lt2 bench throughput` argument checks, which run before any GPU work: sizes and engine names.

The measurement itself needs CUDA (tests/gpu, and the recorded runs under results/bench).

Run: pytest tests/bench/test_throughput_args.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lt2.bench.throughput import ENGINES, parse_engines, parse_sizes
from lt2.cli import main

RECIPE = Path(__file__).parents[2] / "config" / "recipes" / "tiny" / "looped_pure_full.yaml"


def test_sizes_take_k_suffixes():
    assert parse_sizes("1k, 8K,32768") == [1024, 8192, 32768]


@pytest.mark.parametrize("bad", ["", "0", "1m", "-4", "8k,,"])
def test_bad_sizes_are_named(bad):
    with pytest.raises(ValueError, match="bad size"):
        parse_sizes(bad)


def test_engines_keep_their_order():
    assert parse_engines("compile,graph") == ["compile", "graph"]
    assert set(ENGINES) == {"graph", "compile"}


@pytest.mark.parametrize("bad", ["", "graph,eager", "cuda-graph"])
def test_unknown_engines_list_the_choices(bad):
    with pytest.raises(ValueError, match="choose from graph, compile"):
        parse_engines(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU is visible")
def test_cli_without_a_gpu_says_so(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["bench", "throughput", str(RECIPE), "--out", str(out)]) == 2
    assert "measures a CUDA device; none is visible" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_an_unknown_engine_first(tmp_path, capsys):
    assert main(["bench", "throughput", str(RECIPE), "--engines", "fast", "--out", str(tmp_path / "t.csv")]) == 2
    assert "unknown decode engine(s) ['fast']; choose from graph, compile" in capsys.readouterr().err
