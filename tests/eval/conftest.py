"""Fixtures of the evaluation tests: a small BPE tokenizer and tiny saved models of any layout."""

from __future__ import annotations

import json

import pytest
import torch

from lt2.model.looped import LoopedLM
from lt2.testing import tiny_args

TEXTS = [f"The {w} of the play is here, act {i}." for i, w in enumerate(["king", "queen", "fool"] * 20)]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A 300-token byte-level BPE (trained in well under a second)."""
    from lt2.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("tok")
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    train_bpe([train], 300, root / "tok")
    return root / "tok"


def save_model(root, pattern: str, vocab: int = 300, **overrides) -> LoopedLM:
    """A tiny fp32 model with perturbed gates (every path matters), saved to `root`; returned in eval mode."""
    model = LoopedLM(tiny_args(pattern, 2, vocab_size=vocab, **overrides))
    model.init_weights()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "residual_gate" or name.endswith("wg.weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(root)
    return model.eval()


@pytest.fixture
def make_model():
    return save_model
