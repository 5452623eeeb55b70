"""One wildcard rule builds any table: the decode table rebuilds on a CPU from the committed GPU recording.

pytest tests/workflow/test_report_rules.py
"""

from __future__ import annotations

import os
import shutil

from workflow_helpers import REPO, job_counts, lt2, snakemake


def test_decode_table_rebuilds_from_the_committed_recording(workflow):
    recording = "results/paper/bench/1B"
    shutil.copytree(REPO / recording, workflow / recording)
    for recipe in (workflow / "config" / "recipes" / "1B").glob("*.yaml"):
        os.utime(recipe)  # a fresh checkout may give the recipes later times than the recording
    target = "results/paper/tables/decode.md"
    res = snakemake(workflow, "--cores", "1", target, "--configfile", "config/paper.yaml", overlay=False)
    log = res.stdout + res.stderr
    assert job_counts(log) == {"table": 1}, log[-3000:]  # no GPU job: the recording is used
    assert "| looped_pure_full | 1B | graph |" in (workflow / target).read_text()
    audit = lt2(workflow, "audit", target)
    assert audit.returncode == 0, audit.stdout + audit.stderr
