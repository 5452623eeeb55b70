"""RetNet (Sun et al., 2023): multi-scale retention as fla's MultiScaleRetention, i.e. gated linear attention
with a constant decay per head.

    q, k, v = conv(W_q x), conv(W_k x), conv(W_v x)        [B, T, H, Dk], [B, T, H, Dk], [B, T, H, Dv]
    q, k    = rope(q), rope(k)                              rotary embedding at each token's position
    g_h     = log(1 - 2^(-5-h))                              [H] log decay, h = 0 .. H-1
    o       = gla(q, k, v, g, scale=Dk^-0.5)                 [B, T, H, Dv], Dv = expand_v * Dk
    out     = W_o (RMSNorm_per_head(o) * silu(W_g x))        [B, T, C] (without the gate when use_gate is off)

fla's RetNet: rotary over the whole key head dim (half-split layout, like ours; theta = rope_theta, 10000
by default, fla's fixed base), per-head RMSNorm with one weight [Dv] shared by the heads and a swish gate.
The short convolutions (when linear.conv_size > 0) use SiLU, as fla's. Parameter names match fla's
(q_proj, k_proj, v_proj, g_proj, q_conv1d, ..., o_proj); fla calls the norm g_norm_swish_gate when fused.
"""

from __future__ import annotations

import torch
from torch import nn

from lt2.mixers.base import SeqInfo, ShortConv
from lt2.mixers.gla import GatedLinearMixer, GLACache
from lt2.mixers.norms import GatedRMSNorm
from lt2.model.fuse import project
from lt2.model.layers import rope_frequencies, rotate
from lt2.model.pattern import MixerSpec


def retention_log_decay(n_heads: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[H] log of RetNet's per-head decay gamma_h = 1 - 2^(-5-h): from 0.969 (h = 0) towards 1."""
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(n_heads, device=device, dtype=dtype)))


class RetNet(GatedLinearMixer):
    conv_names = ("q_conv1d", "k_conv1d", "v_conv1d")
    input_projections = ("q_proj", "k_proj", "v_proj", "g_proj")  # one matmul once fused (lt2.model.fuse)

    def __init__(self, args, layer_idx: int):
        super().__init__()
        lin = args.linear
        self.layer_idx = layer_idx
        H, Dk = lin.n_heads, lin.head_dim
        self.n_heads, self.head_k_dim, self.head_v_dim = H, Dk, lin.head_v_dim
        key_dim, self.value_dim = H * Dk, H * self.head_v_dim
        self.q_proj = nn.Linear(args.dim, key_dim, bias=False)
        self.k_proj = nn.Linear(args.dim, key_dim, bias=False)
        self.v_proj = nn.Linear(args.dim, self.value_dim, bias=False)
        self.g_proj = nn.Linear(args.dim, self.value_dim, bias=False) if lin.use_gate else None
        if lin.conv_size > 0:
            self.q_conv1d = ShortConv(key_dim, lin.conv_size)
            self.k_conv1d = ShortConv(key_dim, lin.conv_size)
            self.v_conv1d = ShortConv(self.value_dim, lin.conv_size)
        else:
            self.q_conv1d = self.k_conv1d = self.v_conv1d = None
        self.g_norm = GatedRMSNorm(self.head_v_dim, lin.norm_eps)
        self.o_proj = nn.Linear(self.value_dim, args.dim, bias=False)
        self.rope_theta = args.rope_theta
        self.register_buffer("inv_freq", rope_frequencies(Dk, args.rope_theta), persistent=False)

    def reset_parameters(self) -> None:
        self.inv_freq.copy_(rope_frequencies(self.head_k_dim, self.rope_theta))  # recomputed after meta init

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: GLACache | None, spec: MixerSpec) -> torch.Tensor:
        """x [B, T, C] (or [1, total, C] with seq.cu_seqlens) -> [B, T, C]; `cache` continues the sequence in place."""
        B, T, _ = x.shape
        H, Dk, Dv = self.n_heads, self.head_k_dim, self.head_v_dim
        q, k, v, gate = project(self, x, self.input_projections)
        q, k, v = self.convolve((q, k, v), seq, cache)
        cos, sin = seq.rope(self.inv_freq, self.rope_theta)
        q, k = rotate(q.view(B, T, H, Dk), cos, sin), rotate(k.view(B, T, H, Dk), cos, sin)
        g = retention_log_decay(H, x.device, torch.promote_types(x.dtype, torch.float32))  # [H]
        o = self.recur(q, k, v.view(B, T, H, Dv), g, seq, cache)  # [B, T, H, Dv]
        gate = gate.view(B, T, H, Dv) if gate is not None else None
        return self.o_proj(self.g_norm(o, gate).reshape(B, T, self.value_dim))
