from lt2.model.cache import DecodeState
from lt2.model.looped import LoopedLM, left_align
from lt2.model.pattern import Layout, MixerSpec, parse_pattern

__all__ = ["DecodeState", "Layout", "LoopedLM", "MixerSpec", "left_align", "parse_pattern"]
