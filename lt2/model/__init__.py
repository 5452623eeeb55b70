from lt2.model.cache import DecodeState
from lt2.model.looped import LoopedLM, left_align
from lt2.model.pattern import Layout, MixerSpec, parse_pattern
from lt2.model.vote import VoteState

__all__ = ["DecodeState", "Layout", "LoopedLM", "MixerSpec", "VoteState", "left_align", "parse_pattern"]
