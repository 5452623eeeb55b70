"""The reference initialisation (Lingua's): truncated normals scaled by fan-in, zeros where the paper says.

- every nn.Linear: trunc_normal(std = init_std or fan_in ** -0.5, cut at 3 std);
- embeddings: trunc_normal(std = dim ** -0.5);
- RMSNorm weights: ones;
- then each module's own `reset_parameters()` for what is special to it (SSM decay ranges, conv kernels,
  and the zero-initialised gated-attention projection); the per-loop residual gate is zero;
- ModelArgs.out_init_scale multiplies the output projections of every block (1.0 keeps the reference).
"""

from __future__ import annotations

import torch
from torch import nn

from lt2.model.layers import RMSNorm


def _trunc_normal_(weight: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


OUTPUT_PROJECTIONS = ("wo", "o_proj", "out_proj")  # a mixer's projection back to the residual stream


def residual_writers(block: nn.Module) -> list[nn.Linear]:
    """The projections of a block that write into the residual stream: its mixer's output, the FFN's down."""
    outs = [getattr(block.mixer, name) for name in OUTPUT_PROJECTIONS if hasattr(block.mixer, name)]
    if len(outs) != 1:
        raise ValueError(f"{type(block.mixer).__name__} has {len(outs)} of the output projections {OUTPUT_PROJECTIONS}")
    return [outs[0], block.ffn.w2]


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
        scale = getattr(getattr(model, "args", None), "out_init_scale", 1.0)
        if scale != 1.0:
            for block in getattr(model, "layers", ()):
                for proj in residual_writers(block):
                    proj.weight.mul_(scale)
