"""Two gloo ranks under torchrun with FSDP2: a SIGKILL of the whole job and a preemption signal that reaches
one rank only both resume to the uninterrupted 2-rank run; lt2's own launcher (--nproc-per-node) forwards a
preemption and exits 75 itself; and resuming on a different number of ranks (2 -> 1, 1 -> 2) consumes every
packed row exactly once.

    pytest tests/train/test_distributed.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from train_helpers import (
    STEPS,
    checked,
    curve,
    descendants,
    kill_all,
    read_metrics,
    run_train,
    start_train,
    wait_for_step,
)

from lt2.data.loader import DocStream, find_chunks, row_hash, stream_specs
from lt2.data.tokenizer import Tokenizer


def _state(run_dir: Path, step: int) -> dict:
    return json.loads((run_dir / "checkpoints" / f"step_{step:08d}" / "train_state.json").read_text())


def test_two_rank_sigkill_then_resume_matches(golden_two_ranks, recipe, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_train(recipe, run_dir, nproc=2)
    wait_for_step(proc, run_dir, 7)
    kill_all(proc)  # both workers and torchrun, without warning
    assert max(r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r) < STEPS
    assert "resumed from" in checked(run_train(recipe, run_dir, nproc=2))
    assert curve(read_metrics(run_dir / "metrics.jsonl")) == curve(
        read_metrics(golden_two_ranks / "run" / "metrics.jsonl")
    )
    assert _state(run_dir, STEPS)["data"] == _state(golden_two_ranks / "run", STEPS)["data"]


def _worker_pids(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (RANK in their environment)."""
    found = {}
    for pid in descendants(launcher_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((int(v[5:]) for v in environ if v.startswith(b"RANK=")), None)
        if rank is not None:
            found[rank] = pid
    return found


def test_signal_to_one_rank_stops_both_at_the_same_step(golden_two_ranks, recipe, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_train(recipe, run_dir, nproc=2)
    wait_for_step(proc, run_dir, 4)
    deadline = time.monotonic() + 30
    while len(workers := _worker_pids(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(workers) == {0, 1}
    os.kill(workers[1], signal.SIGUSR1)  # rank 0 never sees a signal: it must learn it from the all-reduce
    proc.wait(timeout=120)
    output = proc.stdout.read()
    assert "exitcode  : 75" in output or "exitcode: 75" in output, output[-4000:]  # torchrun reports each worker
    stopped = max(r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r)
    assert stopped < STEPS
    manifest = json.loads((run_dir / "checkpoints" / f"step_{stopped:08d}" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and {"__0_0.distcp", "__1_0.distcp"} <= set(manifest["files"])
    checked(run_train(recipe, run_dir, nproc=2))
    assert curve(read_metrics(run_dir / "metrics.jsonl")) == curve(
        read_metrics(golden_two_ranks / "run" / "metrics.jsonl")
    )


def test_own_launcher_forwards_preemption_exits_75_and_matches_torchrun(golden_two_ranks, recipe, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_train(recipe, run_dir, nproc=2, launcher="lt2")
    wait_for_step(proc, run_dir, 3)
    os.kill(proc.pid, signal.SIGTERM)  # as SLURM signals the job step: the launcher passes it to both ranks
    proc.wait(timeout=120)
    assert proc.returncode == 75, proc.stdout.read()[-4000:]
    assert "resumed from" in checked(run_train(recipe, run_dir, nproc=2, launcher="lt2"))
    assert curve(read_metrics(run_dir / "metrics.jsonl")) == curve(
        read_metrics(golden_two_ranks / "run" / "metrics.jsonl")
    )


def _expected_fingerprint(data: dict, corpus) -> int:
    """Sum of the hashes of rows 0 .. rows[s]-1 of every stream, packed here independently of any run."""
    tokenizer = Tokenizer.load(corpus.tokenizer)
    specs = stream_specs(find_chunks(corpus.train_dir), data["n_streams"])
    total = 0
    for s, spec in enumerate(specs):
        stream = DocStream(spec, tokenizer, data["seq_len"])
        for _ in range(data["streams"][str(s)]["rows"]):
            total += row_hash(stream.next_row()[0])
        stream.close()
    return total


def _resume_elsewhere(golden: Path, at: int, recipe, tmp_path, nproc: int, batch_size: int, corpus) -> None:
    """Resume `golden`'s checkpoint `at` on `nproc` ranks (same global batch) and check the rows consumed."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    name = f"step_{at:08d}"
    shutil.copytree(golden / "run" / "checkpoints" / name, run_dir / "checkpoints" / name)
    before = [r for r in read_metrics(golden / "run" / "metrics.jsonl") if r["step"] <= at]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in before))
    out = checked(run_train(recipe, run_dir, f"data.batch_size={batch_size}", nproc=nproc))
    assert "RNG states are re-seeded" in out
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    final = _state(run_dir, STEPS)
    rows_per_step = nproc * batch_size  # the same global batch as the run that wrote the checkpoint
    assert final["tokens"] == final["data"]["tokens"] == STEPS * rows_per_step * 32
    assert sum(s["rows"] for s in final["data"]["streams"].values()) == STEPS * rows_per_step
    # Every row consumed exactly once: the fingerprints the runs logged (one per step, summed over ranks)
    # add up to the hashes of exactly the rows each stream has emitted by the end, no more, no fewer.
    assert sum(r["data_fingerprint"] for r in records) == _expected_fingerprint(final["data"], corpus)


def test_resume_two_ranks_on_one_consumes_every_row_once(golden_two_ranks, recipe, tmp_path, corpus):
    _resume_elsewhere(golden_two_ranks, 6, recipe, tmp_path, nproc=1, batch_size=4, corpus=corpus)


def test_resume_one_rank_on_two_consumes_every_row_once(golden_single, recipe, tmp_path, corpus):
    _resume_elsewhere(golden_single, 9, recipe, tmp_path, nproc=2, batch_size=1, corpus=corpus)
