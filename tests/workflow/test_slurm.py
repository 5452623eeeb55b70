"""A small part of the tiny DAG through a real SLURM cluster with profiles/slurm, and the GPU request styles.

The cluster test needs slurmctld, slurmd and slurmdbd running (`.ci/slurm_up.sh up`, as .ci/run does); it
checks with sacct that every job really went through sbatch. Run:

    pytest -m slurm tests/workflow/test_slurm.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from workflow_helpers import REPO, lt2, snakemake

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def slurm_running() -> str | None:
    """None when a cluster with accounting answers, else why not."""
    for tool in ("sbatch", "sacct", "scontrol"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        return "slurmctld does not answer `scontrol ping` (bring it up with .ci/slurm_up.sh up)"
    if subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True).returncode != 0:
        return "sacct fails: accounting (slurmdbd) is not running"
    return None


def site_profile(dest: Path) -> Path:
    """profiles/slurm as a site would use it: plus the account (the CI cluster's is `root`) and a short
    first status check, so the three small jobs do not wait 20 s each."""
    cfg = yaml.safe_load(PROFILE.read_text())
    cfg["default-resources"]["slurm_account"] = "root"
    cfg["slurm-init-seconds-before-status-checks"] = 2
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@pytest.mark.slurm
def test_model_size_table_through_sbatch(workflow):
    reason = slurm_running()
    if reason:
        pytest.skip(reason)
    profile = site_profile(workflow / "site-profile")
    res = snakemake(workflow, "--profile", str(profile), "results/test/tables/model_size.md", timeout=600)
    out = res.stdout + res.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    assert len(job_ids) == 3, out[-3000:]  # model_info x2 + the table
    states: dict[str, str] = {}
    for _ in range(60):  # slurmdbd records the end of a job a moment after it ends
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        states = dict(line.split("|") for line in acct.splitlines() if line)
        if len(states) == 3 and set(states.values()) == {"COMPLETED"}:
            break
        time.sleep(1)
    assert states == dict.fromkeys(job_ids, "COMPLETED"), states
    assert list((workflow / ".snakemake" / "slurm_logs").rglob("*.log")), "successful jobs' logs were not kept"
    audit = lt2(workflow, "audit", "results/test/tables/model_size.md")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _train_resources(scale: str, style: str) -> dict:
    """The train rule's GPU resources of profiles/slurm at `scale`; style `gres` uses the commented line."""
    text = PROFILE.read_text()
    train = yaml.safe_load(text)["set-resources"]["train"]
    if style == "gres":
        line = re.search(r"^\s*# (gres: .*)$", text.split("  train:")[1], re.M).group(1)
        del train["gpu"]
        train.update(yaml.safe_load(line))
    wildcards = SimpleNamespace(scale=scale)
    return {k: eval(v, {"wildcards": wildcards}) if isinstance(v, str) else v for k, v in train.items()}


class _Job:
    def __init__(self, resources: dict):
        self.resources = SimpleNamespace(**resources, get=resources.get)


@pytest.mark.parametrize(
    ("scale", "style", "expected"),
    [("1B", "gpu", " --gpus=8"), ("1B", "gres", " --gres=gpu:8"), ("tiny", "gpu", ""), ("tiny", "gres", "")],
)
def test_gpu_request_styles(scale, style, expected):
    """Both request styles of the profile turn into the sbatch options the plugin really emits."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    assert set_gres_string(_Job(_train_resources(scale, style))) == expected
