"""Commands open their provenance record before they work: start time, git commit and input hashes are those
of the moment the command started, not of the moment its files were written.

Each command's work is wrapped so that it takes over a second and, half-way, moves HEAD of a throw-away
repository (the working directory) or rewrites an input.

pytest tests/report/test_command_boundary.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lt2.cli import main
from lt2.report import provenance

TINY = Path(__file__).parents[2] / "config" / "recipes" / "tiny"
IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@t"]
TRAIN_DATA = ["data.train_dir=chunks", "data.tokenizer=tok"]


def git(*args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A git repository holding a tiny recipe and its base, committed; the working directory of the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LT2_GIT_COMMIT", raising=False)
    for name in ("_base.yaml", "looped_pure_gdn.yaml"):
        shutil.copy(TINY / name, tmp_path / name)
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    return tmp_path


def slow(work, during):
    """`work`, preceded by a second's sleep and `during()` (what changes while the command runs)."""

    def wrapped(*args, **kwargs):
        time.sleep(1.1)
        during()
        return work(*args, **kwargs)

    return wrapped


def fake_throughput(recipes, batches, contexts, decode_steps, prefill_chunk, engines):
    from lt2.bench.throughput import ThroughputPoint

    points = [ThroughputPoint(model=r.name, engine=engines[0], batch=1, ctx=8, status="OOM") for r in recipes]
    return points, {"gpu": "none", "copy_bandwidth_bytes_per_s": 1.0}


def fake_train(recipe, dump_dir, out_dir):
    from lt2.train.entry import output_files

    for path in output_files(out_dir):
        provenance.atomic_write_text(path, path.name)
    return 0


# command line, (module, function) doing its work, stand-in for that work (None: the real one), outputs
COMMANDS = {
    "model-info": (
        ["model-info", "looped_pure_gdn.yaml", "--json", "--out", "info.json"],
        ("lt2.model.costs", "model_info"),
        None,
        ["info.json"],
    ),
    "bench-throughput": (
        ["bench", "throughput", "looped_pure_gdn.yaml", "--engines", "graph", "--out", "bench/throughput.csv"],
        ("lt2.bench.throughput", "run_throughput"),
        fake_throughput,
        ["bench/throughput.csv", "bench/throughput.json"],
    ),
    "train": (
        ["train", "looped_pure_gdn.yaml", *TRAIN_DATA, "--dump-dir", "run", "--out", "model"],
        ("lt2.train.entry", "_train"),
        fake_train,
        ["model/model.safetensors", "model/config.json", "model/metrics.jsonl", "model/recipe.yaml"],
    ),
}


def run(monkeypatch, name: str, during) -> tuple[int, list[str]]:
    import importlib

    argv, (module, function), stand_in, outputs = COMMANDS[name]
    if name == "train":  # the run's data: one chunk file and a tokenizer folder, hashed as inputs
        Path("chunks").mkdir()
        Path("chunks/c.chunk.00.jsonl").write_text('{"text": "a"}\n')
        Path("tok").mkdir()
        Path("tok/tokenizer.json").write_text("{}")
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, function, slow(stand_in or getattr(mod, function), during))
    return main(argv), outputs


@pytest.mark.parametrize("name", list(COMMANDS))
def test_record_describes_the_start_of_the_command(repo, monkeypatch, name):
    start = git("rev-parse", "HEAD")
    recipe_sha = provenance.sha256_file("looped_pure_gdn.yaml")
    status, outputs = run(monkeypatch, name, lambda: git("commit", "-q", "--allow-empty", "-m", "moved on"))
    assert status == 0
    assert git("rev-parse", "HEAD") != start  # HEAD did move while the command ran
    for out in outputs:
        rec = json.loads(provenance.sidecar(out).read_text())
        assert rec["started"] < rec["ended"], out  # the work lies between them
        assert rec["git"]["commit"] == start, out
        assert rec["output"]["sha256"] == provenance.sha256_path(out)
        hashed = {Path(i["path"]).name: i["sha256"] for i in rec["inputs"]}
        assert hashed["looped_pure_gdn.yaml"] == recipe_sha


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_input_changed_while_running_fails_and_records_nothing(repo, monkeypatch, name):
    def edit_recipe():
        with open("looped_pure_gdn.yaml", "a") as f:
            f.write("# edited while the command ran\n")

    status, outputs = run(monkeypatch, name, edit_recipe)
    assert status != 0
    assert not any(provenance.sidecar(out).exists() for out in outputs)


def test_nothing_is_recorded_when_the_work_fails(repo, monkeypatch):
    def boom():
        raise ValueError("the work failed")

    status, outputs = run(monkeypatch, "model-info", boom)
    assert status == 2
    assert not any(Path(out).exists() or provenance.sidecar(out).exists() for out in outputs)
