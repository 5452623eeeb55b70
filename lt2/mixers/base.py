"""What every mixer shares: the per-call sequence description and the short causal convolution.

Mixer contract (every family in lt2/mixers follows it):

    mixer = MixerClass(args: ModelArgs, layer_idx: int)
    y = mixer(x, seq, cache, spec)        x, y: [B, T, C] (or [1, total, C] when seq.cu_seqlens is set)
    cache = mixer.init_cache(batch, max_len, device, dtype, spec)

- `seq` (SeqInfo) carries positions, padding and document boundaries and, with a cache, the slots the call
  writes; `spec` (MixerSpec) says what this (loop, layer) runs, e.g. the window size of a loop-level schedule.
- `cache` is None in training. Otherwise it is this (loop, layer)'s own cache (a dataclass of tensors
  that start at zero, integer ones, i.e. slot indices, at -1), read and updated in place: the call
  continues the sequence at cache slots `seq.slots`. A decode step (a cache, and `seq.host_cache_len`
  None) must use tensors only (no host syncs, no data-dependent shapes) so that it can be captured in a CUDA graph.
- `mixing_flops(context, spec)`: forward sequence-mixing FLOPs per token (projections excluded), and
  `decode_bytes(context, spec, dtype)`: cache bytes one decode step of one sequence must read and write at
  `context` tokens; lt2/model/costs.py turns them into Table 1 FLOPs and the decode roofline.
- `reset_parameters()` (optional) initialises only what is special to the mixer (decay ranges, conv
  kernels, zero-init gates); every nn.Linear is initialised by lt2/model/init.py before it runs.
- Padding is left padding: the model zeroes the mixer input at pad positions, which keeps every
  recurrent state exactly zero until the first real token; attention mixers also mask pad keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SeqInfo:
    """The tokens of one forward call, as every mixer sees them. A field means the same thing in every mode; a
    field that a mode does not have is None. Build one with the constructor of its mode:

        training, scoring   SeqInfo.for_training(positions, cu_seqlens)      no cache
        prefill             SeqInfo.for_prefill(positions, start, key_mask)  T tokens at cache slots start..start+T-1
        decode step         SeqInfo.for_decode(positions, slot, key_mask)    one token per row at cache slot `slot`

    positions: [B, T] long, rotary position of every token (restarts at each packed document, skips padding).
    pad_mask: [B, T] bool, True for this call's real tokens (left padding only); None when all are real.
    cu_seqlens: [N+1] int32 boundaries of packed documents over the flattened batch; when set, mixers get x
        as [1, B*T, C] and nothing may cross a boundary. Training only.
    slots: [T] long, on the device, the cache slots this call writes. None without a cache.
    key_mask: [B, max_len] bool, the cache slots that hold real tokens once this call's are written (this
        call's included). None without a cache.
    cache_len: [1] long, on the device, cache slots in use once this call's tokens are written
        (slots[-1] + 1), for kernels that read it there. None without a cache.
    host_cache_len: `cache_len` as a host int, so that prefill reads only the slots written so far. None
        without a cache and in a decode step: a decode step holds device tensors only, so that one captured
        CUDA graph replays it at every position, and reads the whole static cache masked by `key_mask`.
    rope_tables: what `rope` computed so far, by (D/2, theta, device); not an input.
    """

    positions: torch.Tensor
    pad_mask: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    slots: torch.Tensor | None = None
    key_mask: torch.Tensor | None = None
    cache_len: torch.Tensor | None = None
    host_cache_len: int | None = None
    rope_tables: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def for_training(cls, positions: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> SeqInfo:
        """A forward without a cache: positions [B, T] (or [1, B*T] with packed documents' cu_seqlens [N+1])."""
        return cls(positions, cu_seqlens=cu_seqlens)

    @classmethod
    def for_prefill(
        cls, positions: torch.Tensor, start: int, key_mask: torch.Tensor, pad_mask: torch.Tensor | None = None
    ) -> SeqInfo:
        """A chunk of T tokens positions [B, T] written at cache slots start .. start+T-1 (host int `start`).

        key_mask [B, max_len] must already mark the chunk's real tokens; pad_mask [B, T] (True = real) or None.
        Example: the first chunk of 5 tokens, `SeqInfo.for_prefill(torch.arange(5).expand(B, 5), 0, key_mask)`.
        """
        T = positions.shape[1]
        slots = torch.arange(start, start + T, device=positions.device)
        return cls(
            positions, pad_mask, slots=slots, key_mask=key_mask, cache_len=slots[-1:] + 1, host_cache_len=start + T
        )

    @classmethod
    def for_decode(cls, positions: torch.Tensor, slot: torch.Tensor, key_mask: torch.Tensor) -> SeqInfo:
        """One token per row, positions [B, 1], written at the device slot `slot` [1] long (no host value).

        key_mask [B, max_len] must already mark the slot.
        """
        return cls(positions, slots=slot, key_mask=key_mask, cache_len=slot + 1)

    def rope(self, inv_freq: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [B, T, 1, D/2] fp32 of `positions` for the rotary frequencies inv_freq [D/2] of base theta.

        Computed once per call and shared by every layer and loop with the same (D, theta): a looped model
        would otherwise recompute them n_layers x loop_count times per forward (two kernels each in a decode
        step). Example: `q = rotate(q, *seq.rope(self.inv_freq, self.rope_theta))`.
        """
        # imported here: lt2.model imports this module (a top-level import would be circular)
        from lt2.model.layers import rope_cos_sin

        key = (inv_freq.shape[0], theta, inv_freq.device)
        if key not in self.rope_tables:
            self.rope_tables[key] = rope_cos_sin(self.positions, inv_freq)
        return self.rope_tables[key]


def mean_visible_keys(context: int, limit: int | None = None) -> float:
    """Mean number of keys a causal query sees over positions 1..context when it sees at most `limit`."""
    if limit is None or limit >= context:
        return (context + 1) / 2
    return (limit * (limit + 1) / 2 + limit * (context - limit)) / context


def cache_tensors(obj) -> list[torch.Tensor]:
    """Every tensor of a cache object (tensors, dataclasses, tuples, lists, dicts)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in cache_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in cache_tensors(o)]
    if hasattr(obj, "__dataclass_fields__"):
        return [t for f in obj.__dataclass_fields__ for t in cache_tensors(getattr(obj, f))]
    return []


def tensor_bytes(obj) -> int:
    """Bytes of every tensor in a cache object (meta tensors too)."""
    return sum(t.numel() * t.element_size() for t in cache_tensors(obj))


def recurrent_decode_bytes(mixer, spec, dtype: torch.dtype) -> int:
    """A recurrent mixer's decode step reads and writes its whole fixed-size cache (state, conv inputs)."""
    return 2 * tensor_bytes(mixer.init_cache(1, 1, "meta", dtype, spec))


def doc_offsets(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[total] distance of every flattened token from the start of its document."""
    index = torch.arange(total, device=cu_seqlens.device)
    doc = torch.searchsorted(cu_seqlens[1:].to(torch.long), index, right=True)
    return index - cu_seqlens.to(torch.long)[doc]


def cu_seqlens_from_doc_starts(doc_start: torch.Tensor) -> torch.Tensor:
    """Document boundaries [N+1] (int32) over the flattened [B, T] batch from a bool `doc_start` [B, T].

    Every row start is also a boundary, so documents never continue from one row into the next.
    """
    starts = doc_start.clone()
    starts[:, 0] = True
    flat = starts.flatten().nonzero().flatten()
    total = torch.tensor([starts.numel()], device=flat.device)
    return torch.cat([flat, total]).to(torch.int32)


class ShortConv(nn.Module):
    """Depthwise causal convolution (kernel `size`) followed by SiLU, as in Mamba / fla.

    Written as `size` shifted multiply-adds, so that document masking and the decode cache are the
    same few lines; on GPU this is memory-bound either way and torch.compile fuses it.
    """

    def __init__(self, channels: int, size: int, activation: bool = True):
        super().__init__()
        self.channels, self.size, self.activation = channels, size, activation
        self.weight = nn.Parameter(torch.empty(channels, size))  # weight[:, -1] multiplies the current token

    def reset_parameters(self) -> None:
        # nn.Conv1d's default for a depthwise kernel: fan_in = size.
        bound = self.size**-0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def init_cache(self, batch: int, device, dtype) -> torch.Tensor:
        return torch.zeros(batch, self.size - 1, self.channels, device=device, dtype=dtype)

    def forward(
        self, x: torch.Tensor, cu_seqlens: torch.Tensor | None = None, cache: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]; `cache` [B, size-1, C] holds the previous inputs and is updated in place."""
        B, T, C = x.shape
        k = self.size
        history = cache.to(x.dtype) if cache is not None else x.new_zeros(B, k - 1, C)
        xx = torch.cat([history, x], dim=1)  # [B, k-1+T, C]
        offsets = doc_offsets(cu_seqlens, T) if cu_seqlens is not None else None
        # In the input's dtype (as fla's conv returns): under bf16 autocast the fp32 weight would otherwise turn
        # q/k/v into fp32 for everything downstream. (Summing the taps in fp32 instead made the bf16 prefill of
        # the GDN rows ~20% slower on an H100: each tap becomes a cast, a wider multiply and a wider add.)
        weight = self.weight.to(x.dtype)
        y = x * weight[:, -1]
        for shift in range(1, k):
            tap = xx[:, k - 1 - shift : k - 1 - shift + T] * weight[:, -1 - shift]
            if offsets is not None:  # drop taps that reach into the previous document
                tap = tap * (offsets >= shift)[None, :, None].to(tap.dtype)
            y = y + tap
        if cache is not None:
            cache.copy_(xx[:, T:])
        return F.silu(y) if self.activation else y
