"""Shared fixtures: the real-data folder beside the repository and deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# The tests use tiny tensors: one intra-op thread per process avoids waking a thread pool for every small op,
# which is much slower than the op itself when pytest-xdist already keeps every core busy.
torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """Real data sets kept beside the repository (never committed); tests that need them skip without."""
    root = Path(os.environ.get("LT2_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"shared data folder not found (set LT2_SHARED_DATA); looked in {root}")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
