"""Gated-DeltaNet decode: one token's step from the input projections to the output projection.

    GDNDecodeStep           the step's arguments (projections, weights, conv caches, state), documented once
    naive_gdn_decode_step   the oracle: the step written out in PyTorch (fp32), same in-place contract
    fused_gdn_decode_step   one Triton kernel for the whole step, graph-capturable

The Triton name loads on first use, so CPU-only installs without triton can import this package.
The math is in README.md beside this file.
"""

from __future__ import annotations

import importlib

from lt2.kernels.gdn_decode.inputs import GDNDecodeStep
from lt2.kernels.gdn_decode.naive import naive_gdn_decode_step

_TRITON = ("fused_gdn_decode_step",)


def __getattr__(name: str):
    if name in _TRITON:
        # kept in the namespace: later look-ups are plain attributes, which torch.compile traces without a break
        value = globals()[name] = getattr(importlib.import_module("lt2.kernels.gdn_decode.fused"), name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["GDNDecodeStep", "fused_gdn_decode_step", "naive_gdn_decode_step"]
