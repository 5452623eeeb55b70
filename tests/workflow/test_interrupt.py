"""Interrupting the tiny DAG (Ctrl-C, then a hard kill) and re-running it finishes the DAG without redoing
completed jobs and without leaving partially written outputs.

    pytest -m slow tests/workflow/test_interrupt.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lt2.report import provenance
from tests.workflow.conftest import BIN, TEST_CONFIG, command_available, env, job_counts, lt2, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not command_available("train"), reason="`lt2 train` is not available in this checkout"),
]


def start(wf: Path, log: Path) -> subprocess.Popen:
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/local", "all", "--configfile", TEST_CONFIG]
    # own session: the hard kill below takes snakemake and every job it started, like a lost machine
    return subprocess.Popen(
        cmd, cwd=wf, env=env(), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended ({proc.returncode}) before {path} appeared")
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.2)


def recorded_outputs(wf: Path) -> dict[str, float]:
    """Output files with a provenance record -> mtime (completed jobs' outputs)."""
    out = {}
    for root in ("data", "results", "figures"):
        for side in (wf / root).rglob("*" + provenance.SUFFIX):
            target = side.with_name(side.name[: -len(provenance.SUFFIX)])
            if target.is_file():
                out[str(target.relative_to(wf))] = target.stat().st_mtime
    return out


def assert_no_partial_outputs(wf: Path) -> None:
    """Every file that has a record is exactly the file that record describes."""
    for name in recorded_outputs(wf):
        record = provenance.read_provenance(wf / name)
        assert record["output"]["sha256"] == provenance.sha256_path(wf / name), f"{name} differs from its record"


def test_interrupt_and_kill_then_rerun(workflow):
    wf, logs = workflow, workflow.parent
    first_model = wf / "results/test/train/tiny/looped_full/model.safetensors.prov.json"
    second_train_log = wf / "logs/test/train/tiny/looped_swa.log"

    # 1. Ctrl-C once the first model is finished and the second training has started
    proc = start(wf, logs / "run1.log")
    wait_for(first_model, proc)
    wait_for(second_train_log, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    done_before_int = recorded_outputs(wf)
    assert "results/test/train/tiny/looped_full/model.safetensors" in done_before_int
    assert_no_partial_outputs(wf)

    # 2. re-run, then kill everything (SIGKILL to the whole process group) once a perplexity job runs
    proc = start(wf, logs / "run2.log")
    wait_for(wf / "logs/test/eval/ppl/tiny", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert_no_partial_outputs(wf)
    done_before_kill = recorded_outputs(wf)

    # 3. a killed snakemake leaves its lock behind; unlock and finish
    snakemake(wf, "--unlock")
    res = snakemake(wf, "--profile", "profiles/local", "all", timeout=900)
    redone = job_counts(res.stdout + res.stderr)
    assert redone, res.stdout[-3000:]
    assert not {"download", "shuffle", "tokenizer"} & set(redone), redone
    finished = recorded_outputs(wf)
    for name, mtime in {**done_before_int, **done_before_kill}.items():
        assert finished.get(name) == mtime, f"{name} was redone although it was complete"
    assert_no_partial_outputs(wf)
    for final in ("results/test/tables/lm.md", "figures/test/training_curve.png"):
        audit = lt2(wf, "audit", final)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "Nothing to be done" in snakemake(wf, "-n", "all").stdout
