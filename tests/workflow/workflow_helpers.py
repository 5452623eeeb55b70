"""Helpers for the workflow tests: a private copy of the workflow to run Snakemake in, and a runner.

Imported as `workflow_helpers` (pytest puts tests/workflow/ on sys.path; the name is unique across tests/).

Each test runs Snakemake in its own copy (Snakefile, workflow/, config/, profiles/ and the test overlay), so
tests never write into the repository's data/, results/ or .snakemake/ and can run side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_CONFIG = "tests/workflow/config.yaml"  # overlay: name `test`, two tiny recipes, 20 steps
BIN = Path(sys.executable).parent  # the environment's `snakemake` and `lt2`


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for item in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / item)
    (dest / "tests" / "workflow").mkdir(parents=True)
    shutil.copy2(REPO / TEST_CONFIG, dest / TEST_CONFIG)
    return dest


def env() -> dict[str, str]:
    """The test's environment with this interpreter's bin first, so jobs find `lt2` without activation."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    return e


def snakemake(
    cwd: Path, *args: str, timeout: float = 600, check: bool = True, overlay: bool = True
) -> subprocess.CompletedProcess:
    """Run `snakemake ARGS [--configfile tests/workflow/config.yaml]` in `cwd`; output in the result."""
    cmd = [str(BIN / "snakemake"), *args, *(["--configfile", TEST_CONFIG] if overlay else [])]
    res = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}")
    return res


def lt2(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lt2"), *args], cwd=cwd, env=env(), capture_output=True, text=True)


def command_available(*words: str) -> bool:
    """Whether `lt2 WORDS --help` works: commands owned by other parts of the package may not exist yet."""
    return lt2(REPO, *words, "--help").returncode == 0


def job_counts(stdout: str) -> dict[str, int]:
    """The `Job stats` table of a dry run: rule -> number of jobs."""
    counts = {}
    block = stdout.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in stdout else ""
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts
