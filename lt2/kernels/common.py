"""What the recurrent and sparse kernel families share: the reference compute dtype, the argument checks of
a q/k/v problem with a recurrent state, and packed (varlen) segments as a padded batch.

Shapes: B batch, T tokens, H heads, K key dim, V value dim, N sequences (B, or segments with cu_seqlens).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


def lazy_attributes(namespace: dict[str, Any], module: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A package's module-level `__getattr__` (PEP 562) that imports `names` from `module` on first use, so
    that a CPU-only install without triton can import the package. The value is kept in the package's
    namespace: later look-ups are plain attributes, which torch.compile traces without a graph break."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = namespace[name] = getattr(importlib.import_module(module), name)
            return value
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")

    return __getattr__


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for 16- and 32-bit inputs, fp64 for fp64 inputs: the precision the references accumulate in."""
    return torch.promote_types(x.dtype, torch.float32)


def check_qkv_state(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
) -> None:
    """Raise ValueError, naming the shapes, unless q, k [B, T, H, K], v [B, T, H, V], cu_seqlens [N+1] (then
    B must be 1) and initial_state [N, H, K, V] form one problem. Families check their gates themselves."""
    if q.ndim != 4:
        raise ValueError(f"q must be [B, T, H, K], got shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k shape {tuple(k.shape)} != q shape {tuple(q.shape)}")
    if v.ndim != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] = [{B}, {T}, {H}, V], got shape {tuple(v.shape)}")
    n = B
    if cu_seqlens is not None:
        if cu_seqlens.ndim != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be [N+1] with N >= 1, got shape {tuple(cu_seqlens.shape)}")
        if B != 1:
            raise ValueError(f"with cu_seqlens the batch must be flattened to B = 1, got B = {B}")
        n = cu_seqlens.numel() - 1
    if initial_state is not None and initial_state.shape != (n, H, K, v.shape[-1]):
        raise ValueError(
            f"initial_state must be [N, H, K, V] = [{n}, {H}, {K}, {v.shape[-1]}], got {tuple(initial_state.shape)}"
        )


@dataclass
class PaddedSegments:
    """Packed segments [1, total, ...] (cu_seqlens) laid out as a right-padded batch [N, longest, ...].

    The chunked references run equal-length batches; padding slots hold zeros, which for the recurrences
    means no write and no decay, so each segment's final state is exact.
    """

    index: torch.Tensor  # [N, longest] long: the packed token in each slot (0 in padding)
    valid: torch.Tensor  # [N, longest] bool: the slot holds a token

    @classmethod
    def from_cu_seqlens(cls, cu_seqlens: torch.Tensor, total: int, device: torch.device) -> PaddedSegments:
        cu = cu_seqlens.to(device=device, dtype=torch.long)
        lengths = cu[1:] - cu[:-1]  # [N]
        if int(cu[-1]) != total or bool((lengths < 0).any()):  # host syncs: training/prefill only, never decode
            raise ValueError(f"cu_seqlens must be non-decreasing and end at the token count {total}, got {cu.tolist()}")
        steps = torch.arange(int(lengths.max()), device=device)
        valid = steps[None, :] < lengths[:, None]
        return cls(index=torch.where(valid, cu[:-1, None] + steps[None, :], 0), valid=valid)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[1, total, ...] -> [N, longest, ...], zeros past each segment's end."""
        rows = x[0][self.index]
        return rows.masked_fill(~self.valid.view(*self.valid.shape, *[1] * (rows.ndim - 2)), 0)

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """[N, longest, ...] -> [1, total, ...]: segments are contiguous and in order, so valid rows concatenate."""
        return y[self.valid][None]
