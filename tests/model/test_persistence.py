"""save_pretrained / from_pretrained: exact round trip, byte-reproducible files, clear errors on mismatch.

Run: pytest tests/model/test_persistence.py
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from lt2.model import LoopedLM
from lt2.testing import tiny_model


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("pattern", ["full", "interleave:1:1:gdn:full", "random:1:1"])
def test_round_trip_is_exact(tmp_path, pattern):
    model = tiny_model(pattern, 2).float()
    model.save_pretrained(tmp_path)
    loaded = LoopedLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, 97, (2, 20))
    torch.testing.assert_close(loaded(tokens), model(tokens), rtol=0, atol=0)


def test_export_bytes_are_reproducible(tmp_path):
    model = tiny_model("full", 1).float()
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    for name in ("model.safetensors", "config.json"):
        assert sha(tmp_path / "a" / name) == sha(tmp_path / "b" / name)


def test_other_architecture_is_refused_with_the_keys(tmp_path):
    tiny_model("full", 1).float().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["pattern"] = "gdn"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"does not match this architecture \(missing: .*A_log.*unexpected: .*wq"):
        LoopedLM.from_pretrained(tmp_path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json is missing"):
        LoopedLM.from_pretrained(tmp_path)
