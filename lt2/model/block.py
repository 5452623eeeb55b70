"""One physical layer: h = x + Mixer(RMSNorm(x)); out = h + SwiGLU(RMSNorm(h)).

With `sandwich_norm` (Ouro's block) each branch output is normed too before it joins the residual:
h = x + RMSNorm(Mixer(RMSNorm(x))); out = h + RMSNorm(SwiGLU(RMSNorm(h))).
"""

from __future__ import annotations

import torch
from torch import nn

from lt2.mixers import mixer_class
from lt2.mixers.base import SeqInfo
from lt2.model.layers import RMSNorm, SwiGLU
from lt2.model.pattern import MixerSpec


class Block(nn.Module):
    def __init__(self, args, layer_idx: int, family: str):
        super().__init__()
        self.family = family
        self.mixer_norm = RMSNorm(args.dim, args.norm_eps)
        self.mixer = mixer_class(family)(args, layer_idx)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn = SwiGLU(args.dim, args.ffn_dim)
        sandwich = args.sandwich_norm
        self.mixer_out_norm = RMSNorm(args.dim, args.norm_eps) if sandwich else nn.Identity()
        self.ffn_out_norm = RMSNorm(args.dim, args.norm_eps) if sandwich else nn.Identity()

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache, spec: MixerSpec) -> torch.Tensor:
        mixer_in = self.mixer_norm(x)
        if seq.pad_mask is not None:  # zero pad tokens: recurrent states stay exactly zero through them
            mixer_in = mixer_in * seq.pad_mask[..., None].to(mixer_in.dtype)
        h = x + self.mixer_out_norm(self.mixer(mixer_in, seq, cache, spec))
        return h + self.ffn_out_norm(self.ffn(self.ffn_norm(h)))
