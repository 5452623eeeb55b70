"""Fixture of the workflow tests: a private copy of the workflow (see workflow_helpers.copy_workflow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import copy_workflow


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "wf")
