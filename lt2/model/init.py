"""The reference initialisation (Lingua's): truncated normals scaled by fan-in, zeros where the paper says.

- every nn.Linear: trunc_normal(std = init_std or fan_in ** -0.5, cut at 3 std);
- embeddings: trunc_normal(std = dim ** -0.5);
- RMSNorm weights: ones;
- then each module's own `reset_parameters()` for what is special to it (SSM decay ranges, conv kernels,
  and the zero-initialised gated-attention projection); the per-loop residual gate is zero.
"""

from __future__ import annotations

import torch
from torch import nn

from lt2.model.layers import RMSNorm


def _trunc_normal_(weight: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


@torch.no_grad()
def init_weights(model: nn.Module, seed: int, init_std: float | None = None) -> None:
    """Initialise `model` in place, deterministically for a given `seed` (independent of global RNG)."""
    devices = [p.device for p in model.parameters()]
    with torch.random.fork_rng(devices=[d for d in set(devices) if d.type == "cuda"]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                _trunc_normal_(module.weight, init_std or module.in_features**-0.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                _trunc_normal_(module.weight, init_std or module.embedding_dim**-0.5)
            elif isinstance(module, RMSNorm):
                module.reset_parameters()
        for module in model.modules():
            if (
                module is not model
                and hasattr(module, "reset_parameters")
                and not isinstance(module, (nn.Linear, nn.Embedding, RMSNorm))
            ):
                module.reset_parameters()
        if getattr(model, "residual_gate", None) is not None:
            nn.init.zeros_(model.residual_gate)
