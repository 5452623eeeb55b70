"""workflow/envs/*.yaml list exactly the requirements of pyproject.toml: its dependencies plus the extras
that each env file names in its `# pyproject extras:` line.

    pytest tests/workflow/test_envs.py
"""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from workflow_helpers import REPO

ENVS = sorted((REPO / "workflow" / "envs").glob("*.yaml"))


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_there_are_env_files():
    assert [p.stem for p in ENVS] == ["cpu", "gpu"]


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_matches_pyproject(path):
    text = path.read_text()
    m = re.search(r"^# pyproject extras: (.+)$", text, re.M)
    assert m, f"{path.name} must say which pyproject extras it holds (# pyproject extras: a, b)"
    project = pyproject()
    extras = [e.strip() for e in m.group(1).split(",")]
    unknown = set(extras) - set(project["optional-dependencies"])
    assert not unknown, f"{path.name} names extras that pyproject.toml lacks: {sorted(unknown)}"
    expected = set(project["dependencies"])
    for extra in extras:
        expected |= set(project["optional-dependencies"][extra])
    deps = yaml.safe_load(text)["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert set(pip) == expected, (
        f"{path.name} is out of sync with pyproject.toml: "
        f"missing {sorted(expected - set(pip))}, extra {sorted(set(pip) - expected)}"
    )
    assert "python=3.11" in deps  # the Python that CI and the pinned torch wheel use


def rule_blocks() -> dict[str, str]:
    """rule name -> its text, from every workflow/rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), re.M | re.S):
            blocks[m.group(1)] = m.group(2)
    return blocks


def test_every_job_rule_declares_its_conda_env():
    """`--use-conda` runs every job in workflow/envs/*: a rule with a shell command names its env file (or
    `conda_env`, which picks cpu.yaml at tiny scale and gpu.yaml otherwise), and each env file has the
    post-deploy script that installs lt2 itself into it."""
    envs = {p.name for p in ENVS}
    blocks = rule_blocks()
    assert blocks, "no rules parsed"
    for rule, text in blocks.items():
        if "    shell:" not in text:
            continue  # a target rule (all, gpu_results)
        m = re.search(r"^    conda:\n\s+(\S+)", text, re.M)
        assert m, f"rule {rule} has no conda: directive"
        env = m.group(1).strip('"')
        assert env == "conda_env" or (env.startswith("../envs/") and env.removeprefix("../envs/") in envs), (rule, env)
    for path in ENVS:
        script = path.with_name(f"{path.stem}.post-deploy.sh")
        assert script.is_file() and "pip install --no-deps -e ." in script.read_text(), script
