"""What the gated-linear-attention mixers (mamba2, hgrn2, retnet) share: the cache, the short convolutions'
plumbing, the choice of kernel and the gated RMSNorm. Each family adds its projections and its decay.

    q, k [B, T, H, Dk], v [B, T, H, Dv], g [B, T, H] | [B, T, H, Dk] | [H]   (family-specific)
    o = gla(q, k, v, g)                                   [B, T, H, Dv]     (lt2.kernels.gla)

Kernels: on CUDA with fla installed, fla's chunked kernels (training, prefill) and its recurrent kernel
(one-token decode); elsewhere `chunk_gla` and the per-token oracle, in PyTorch. fp64 always takes the
references (fla has no fp64 kernels); that is what the exact decode == forward tests run.

Cache per (loop, layer): the recurrent state [B, H, Dk, Dv] and the last conv_size - 1 inputs of each
short convolution, allocated once and updated in place. Prefill (T > 1) runs the chunked form from the
cached state; a one-token step runs the recurrence with tensors only (CUDA-graph capturable).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lt2.kernels import backend
from lt2.kernels.gla import chunk_gla, fla_chunk_gla, fla_fused_recurrent_gla, naive_recurrent_gla
from lt2.kernels.gla.chunk import CHUNK_SIZE
from lt2.mixers.base import SeqInfo, ShortConv, recurrent_decode_bytes
from lt2.model.pattern import MixerSpec


@dataclass
class GLACache:
    """One (loop, layer)'s decode cache, allocated once and updated in place."""

    state: torch.Tensor  # [B, H, Dk, Dv] recurrent state, fp32 (fp64 for fp64 models: exact decode tests)
    convs: tuple[torch.Tensor, ...]  # per short convolution, in the mixer's `conv_names` order: [B, size - 1, C]


class GatedLinearMixer(nn.Module):
    """Base of Mamba2, HGRN2 and RetNet: cache, convolutions and the recurrence; families write `forward`.

    Subclasses set `n_heads`, `head_k_dim`, `head_v_dim` in __init__ and name their ShortConv attributes in
    `conv_names` (an attribute may be None when the family's convolution is switched off).
    """

    conv_names: tuple[str, ...] = ()
    n_heads: int
    head_k_dim: int
    head_v_dim: int

    def _convs(self) -> tuple[ShortConv, ...]:
        return tuple(c for c in (getattr(self, name) for name in self.conv_names) if c is not None)

    def init_cache(self, batch: int, max_len: int, device, dtype, spec: MixerSpec) -> GLACache:
        """Fixed-size cache for `batch` sequences; `max_len` does not matter for a recurrent state."""
        shape = (batch, self.n_heads, self.head_k_dim, self.head_v_dim)
        state = torch.zeros(shape, device=device, dtype=torch.promote_types(dtype, torch.float32))
        return GLACache(state, tuple(conv.init_cache(batch, device, dtype) for conv in self._convs()))

    def decode_bytes(self, context: int, spec: MixerSpec, dtype: torch.dtype) -> float:
        return float(recurrent_decode_bytes(self, spec, dtype))

    def mixing_flops(self, context: int, spec: MixerSpec) -> float:
        """Forward sequence-mixing FLOPs per token, excluding projections: the chunked form's matmuls.

        Per head and token, with chunk C: Q K^T and A V (2C Dk + 2C Dv), the inter-chunk read-out
        (Q e^b) S and the state write K^T V (2 * 2 Dk Dv). Independent of `context`.
        """
        dk, dv, c = self.head_k_dim, self.head_v_dim, CHUNK_SIZE
        return float(self.n_heads * (2 * c * (dk + dv) + 4 * dk * dv))

    def convolve(self, xs: tuple[torch.Tensor, ...], seq: SeqInfo, cache: GLACache | None) -> tuple[torch.Tensor, ...]:
        """Run the short convolutions (in `conv_names` order) on xs [B, T, C_i]; identity when they are off."""
        convs = self._convs()
        if not convs:
            return xs
        states = cache.convs if cache is not None else (None,) * len(convs)
        return tuple(conv(x, seq.cu_seqlens, state) for conv, x, state in zip(convs, xs, states, strict=True))

    def recur(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        seq: SeqInfo,
        cache: GLACache | None,
        scale: float | None = None,
    ) -> torch.Tensor:
        """q, k [B, T, H, Dk], v [B, T, H, Dv], g (log decay) -> o [B, T, H, Dv]; continues `cache` in place."""
        fast = backend.use_fast(q, "fla") and q.dtype != torch.float64
        if cache is None:
            chunked = fla_chunk_gla if fast else chunk_gla
            o, _ = chunked(q, k, v, g, scale=scale, cu_seqlens=seq.cu_seqlens)
            return o
        if q.shape[1] == 1:  # decode: one step, tensors only (CUDA-graph capturable)
            step = fla_fused_recurrent_gla if fast else naive_recurrent_gla
            o, state = step(q, k, v, g, scale=scale, initial_state=cache.state, output_final_state=True)
        else:  # prefill, possibly onto an existing cache
            chunked = fla_chunk_gla if fast else chunk_gla
            o, state = chunked(q, k, v, g, scale=scale, initial_state=cache.state, output_final_state=True)
        cache.state.copy_(state)
        return o
