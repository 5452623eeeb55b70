"""Every tiny recipe can learn: a model of each row memorises one small batch (loss falls by more than 90%).

A mixer whose gradients are wrong, disconnected or unstable fails here even when its outputs are right.
Run: pytest tests/model/test_overfit.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lt2.model import LoopedLM
from lt2.recipe import load_recipe

TINY = Path(__file__).resolve().parents[2] / "config" / "recipes" / "tiny"
ROWS = sorted(p.stem for p in TINY.glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("row", ROWS)
def test_tiny_recipe_overfits_a_batch(row):
    recipe = load_recipe(TINY / f"{row}.yaml")
    torch.manual_seed(0)
    model = LoopedLM(recipe.model)
    model.init_weights()
    model.train()
    tokens = torch.randint(0, recipe.model.vocab_size, (2, 33))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(200):
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        losses.append(loss.item())
        if losses[-1] < 0.1 * losses[0]:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.1 * losses[0], f"{row}: loss {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} steps"
