from lt2.model.cache import DecodeState
from lt2.model.looped import LoopedLM
from lt2.model.pattern import Layout, MixerSpec, parse_pattern

__all__ = ["DecodeState", "Layout", "LoopedLM", "MixerSpec", "parse_pattern"]
