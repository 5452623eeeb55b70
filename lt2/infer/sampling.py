"""Token sampling without host syncs: greedy, temperature and nucleus (top-p), all fixed-shape tensor ops
so that sampling can sit inside a captured CUDA graph together with the decode step."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingArgs:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0  # nucleus mass kept; 1.0 keeps everything
    max_new_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def sample(logits: torch.Tensor, args: SamplingArgs, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] -> next tokens [B] (long)."""
    if args.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / args.temperature, dim=-1)
    if args.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        outside = sorted_probs.cumsum(-1) - sorted_probs > args.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # Exponential-race sampling (argmax of p / E, E ~ Exp(1)) draws from p without torch.multinomial's sync.
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / noise).argmax(dim=-1)
