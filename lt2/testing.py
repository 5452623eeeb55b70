"""One closeness check for fast paths vs references, used by the tests and `lt2 verify-kernels`."""

from __future__ import annotations

import torch


def error_stats(actual: torch.Tensor, expected: torch.Tensor) -> dict[str, float]:
    """max |a - e| and the relative RMS error ||a - e|| / ||e||, computed in fp64."""
    a, e = actual.detach().double(), expected.detach().double()
    diff = a - e
    return {
        "max_abs": diff.abs().max().item() if diff.numel() else 0.0,
        "rel_rms": (diff.norm() / e.norm().clamp_min(1e-30)).item(),
    }


def assert_close(
    name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """Fail with both error measures unless rel-RMS <= rtol or max-abs <= atol; shapes must match."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{name}: non-finite values")
    stats = error_stats(actual, expected)
    if stats["rel_rms"] > rtol and stats["max_abs"] > atol:
        raise AssertionError(
            f"{name}: max_abs={stats['max_abs']:.3e} rel_rms={stats['rel_rms']:.3e} (rtol={rtol}, atol={atol})"
        )
