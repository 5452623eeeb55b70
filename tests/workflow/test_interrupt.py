"""Interrupting the tiny DAG (Ctrl-C, then a hard kill) and re-running it finishes the DAG without redoing
completed jobs and without leaving partially written outputs. Both signals go to the whole process group,
as a terminal's Ctrl-C or a lost machine would deliver them.

    pytest -m slow tests/workflow/test_interrupt.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from workflow_helpers import BIN, TEST_CONFIG, command_available, env, job_counts, lt2, snakemake

from lt2.report import provenance

RECIPES = ("looped_hybrid_gdn_4to1", "looped_pure_full")  # tests/workflow/config.yaml
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not command_available("train"), reason="`lt2 train` is not available in this checkout"),
]


def start(wf: Path, log: Path) -> subprocess.Popen:
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/local", "all", "--configfile", TEST_CONFIG]
    # own session: the hard kill below takes snakemake and every job it started, like a lost machine
    return subprocess.Popen(
        cmd,
        cwd=wf,
        env=env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_ctrl_c,
    )


def _default_ctrl_c() -> None:
    # A test run started in the background (CI runners, `cmd &`) inherits SIGINT ignored, and so would
    # snakemake and its jobs: give them the default disposition of a terminal session.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(paths: list[Path], proc: subprocess.Popen, timeout: float = 900) -> Path:
    """The first of `paths` to exist, polling while snakemake runs."""
    end = time.monotonic() + timeout
    while not (found := [p for p in paths if p.exists()]):
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended ({proc.returncode}) before any of {paths} appeared")
        if time.monotonic() > end:
            raise AssertionError(f"none of {paths} appeared in {timeout} s")
        time.sleep(0.2)
    return found[0]


def recorded_outputs(wf: Path) -> list[str]:
    """Output files that have a provenance record."""
    out = []
    for root in ("data", "results", "figures"):
        for side in (wf / root).rglob("*" + provenance.SUFFIX):
            target = side.with_name(side.name[: -len(provenance.SUFFIX)])
            if target.exists():
                out.append(str(target.relative_to(wf)))
    return out


def complete_outputs(wf: Path) -> dict[str, float]:
    """Outputs Snakemake itself holds complete (`--summary` plan "no update") -> mtime. A job interrupted
    just as it finished may count either way; Snakemake's view is what decides whether it is redone."""
    summary = snakemake(wf, "--summary", "--rerun-incomplete").stdout.splitlines()
    done = [row.split("\t")[0] for row in summary[1:] if row.endswith("\tok\tno update")]
    return {name: (wf / name).stat().st_mtime for name in done}


def assert_no_partial_outputs(wf: Path) -> None:
    """Every file that has a record is exactly the file that record describes."""
    for name in recorded_outputs(wf):
        record = provenance.read_provenance(wf / name)
        assert record["output"]["sha256"] == provenance.sha256_path(wf / name), f"{name} differs from its record"


def test_interrupt_and_kill_then_rerun(workflow):
    wf, logs = workflow, workflow.parent
    train = {r: wf / f"results/test/train/tiny/{r}/model.safetensors.prov.json" for r in RECIPES}
    train_log = {r: wf / f"logs/test/train/tiny/{r}.log" for r in RECIPES}

    # 1. Ctrl-C once one model is finished and the other's training has started (one at a time on 2 cores)
    proc = start(wf, logs / "run1.log")
    done = wait_for(list(train.values()), proc)
    (other,) = [r for r in RECIPES if train[r] != done]
    wait_for([train_log[other]], proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals snakemake and the jobs it started
    assert proc.wait(timeout=300) != 0
    assert_no_partial_outputs(wf)
    done_before_int = complete_outputs(wf)
    assert str(done.relative_to(wf)).removesuffix(provenance.SUFFIX) in done_before_int
    assert "results/test/tables/lm.md" not in done_before_int

    # 2. re-run, then kill everything (SIGKILL to the whole process group) once a perplexity job runs
    pending = [r for r in RECIPES if f"results/test/eval/ppl/tiny/{r}.json" not in done_before_int]
    proc = start(wf, logs / "run2.log")
    wait_for([wf / f"logs/test/eval/ppl/tiny/{r}.log" for r in pending], proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert_no_partial_outputs(wf)
    snakemake(wf, "--unlock")  # a killed snakemake leaves its lock behind
    done_before_kill = complete_outputs(wf)
    assert "results/test/tables/lm.md" not in done_before_kill

    # 3. finish
    res = snakemake(wf, "--profile", "profiles/local", "all", timeout=900)
    redone = job_counts(res.stdout + res.stderr)
    assert redone, res.stdout[-3000:]
    assert not {"download", "shuffle", "tokenizer"} & set(redone), redone
    for name, mtime in {**done_before_int, **done_before_kill}.items():
        assert (wf / name).stat().st_mtime == mtime, f"{name} was redone although it was complete"
    assert_no_partial_outputs(wf)
    for final in ("results/test/tables/lm.md", "figures/test/training_curve.png"):
        audit = lt2(wf, "audit", final)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "Nothing to be done" in snakemake(wf, "-n", "all").stdout
