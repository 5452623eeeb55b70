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
