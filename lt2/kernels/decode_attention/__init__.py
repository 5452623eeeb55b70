"""Decode attention: one new query token per sequence over a static KV cache (full or window ring).

    naive_decode_attention   the oracle: a masked softmax in PyTorch (fp32)
    decode_attention         split-KV Triton kernels (flash-decoding), graph-capturable (device `length`)

The Triton names load on first use, so CPU-only installs without triton can import this package.
Layout q [B, H, D], cache [B, S, Hkv, D] as in fla; the math is in README.md beside this file.
"""

from __future__ import annotations

from lt2.kernels.common import lazy_attributes
from lt2.kernels.decode_attention.naive import naive_decode_attention, visible_keys

_TRITON = ("decode_attention", "default_num_splits")
__getattr__ = lazy_attributes(globals(), "lt2.kernels.decode_attention.split_kv", _TRITON)


__all__ = ["decode_attention", "default_num_splits", "naive_decode_attention", "visible_keys"]
