"""Token mixers, one module per weight family (see lt2.model.pattern.MIXER_FAMILIES).

MIXERS maps a family to "module:Class"; modules are imported on first use, so a family's optional
GPU dependencies never load unless a model uses it.
"""

from __future__ import annotations

import importlib

from lt2.mixers.base import SeqInfo, ShortConv

MIXERS: dict[str, str] = {
    "attention": "lt2.mixers.attention:Attention",
    "gdn": "lt2.mixers.gdn:GatedDeltaNet",
    "kda": "lt2.mixers.kda:KimiDeltaAttention",
    "deltanet": "lt2.mixers.deltanet:DeltaNet",
    "mamba2": "lt2.mixers.mamba2:Mamba2",
    "hgrn2": "lt2.mixers.hgrn2:HGRN2",
    "retnet": "lt2.mixers.retnet:RetNet",
    "nsa": "lt2.mixers.nsa:NativeSparseAttention",
    "dsa": "lt2.mixers.dsa:DeepSeekSparseAttention",
}


def mixer_class(family: str) -> type:
    if family not in MIXERS:
        raise ValueError(f"unknown mixer family {family!r}; valid: {', '.join(MIXERS)}")
    module, _, name = MIXERS[family].partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["MIXERS", "SeqInfo", "ShortConv", "mixer_class"]
