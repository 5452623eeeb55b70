"""Gated-DeltaNet decode: one token's step from the input projections to the output projection.

    GDNDecodeStep           the step's arguments (projections, weights, conv caches, state), documented once
    naive_gdn_decode_step   the oracle: the step written out in PyTorch (fp32), same in-place contract
    fused_gdn_decode_step   one Triton kernel for the whole step, graph-capturable

The Triton name loads on first use, so CPU-only installs without triton can import this package.
The math is in README.md beside this file.
"""

from __future__ import annotations

from lt2.kernels.common import lazy_attributes
from lt2.kernels.gdn_decode.inputs import GDNDecodeStep
from lt2.kernels.gdn_decode.naive import naive_gdn_decode_step

_TRITON = ("fused_gdn_decode_step",)
__getattr__ = lazy_attributes(globals(), "lt2.kernels.gdn_decode.fused", _TRITON)


__all__ = ["GDNDecodeStep", "fused_gdn_decode_step", "naive_gdn_decode_step"]
