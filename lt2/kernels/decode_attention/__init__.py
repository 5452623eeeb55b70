"""Decode attention: one new query token per sequence over a static KV cache (full or window ring).

    naive_decode_attention   the oracle: a masked softmax in PyTorch (fp32)
    decode_attention         split-KV Triton kernels (flash-decoding), graph-capturable (device `length`)

The Triton names load on first use, so CPU-only installs without triton can import this package.
Layout q [B, H, D], cache [B, S, Hkv, D] as in fla; the math is in README.md beside this file.
"""

from __future__ import annotations

import importlib

from lt2.kernels.decode_attention.naive import naive_decode_attention, visible_keys

_TRITON = ("decode_attention", "default_num_splits")


def __getattr__(name: str):
    if name in _TRITON:
        # kept in the namespace: later look-ups are plain attributes, which torch.compile traces without a break
        value = globals()[name] = getattr(importlib.import_module("lt2.kernels.decode_attention.split_kv"), name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["decode_attention", "default_num_splits", "naive_decode_attention", "visible_keys"]
