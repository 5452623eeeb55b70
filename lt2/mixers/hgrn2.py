"""HGRN2 (Qin et al., 2024): gated linear attention with a forget gate per key channel, as fla's HGRN2Attention.

    q, f, i = conv(W_q x), conv(W_f x), conv(W_i x)         [B, T, H*Dk], [B, T, H*Dk], [B, T, C]
    g       = logsigmoid(f)                                 [B, T, H, Dk] log forget gate
    o       = gla(q=silu(q), k=1 - exp(g), v=i, g)          [B, T, H, Dv], Dv = C / H, scale Dk^-0.5 (fla's)
    out     = W_o RMSNorm(o)                                [B, T, C], one norm over all C channels

Dk is `linear.head_dim` (fla's expand_ratio), H `linear.n_heads`; the value/input dim is the model dim, as
in fla. The short convolutions (when linear.conv_size > 0) have no activation, as fla's. HGRN2 has no
output gate, so `linear.use_gate` and `linear.expand_v` do not apply to it. Parameter names match fla's
(q_proj, f_proj, i_proj, q_conv1d, f_conv1d, i_conv1d, g_norm, o_proj).

Lower bound: fla's HGRN2Attention applies one only when its caller passes `lower_bound`; fla's HGRN2Model
does, from a model-level parameter [n_layers, dim] (softmax over layers, cumulative; zero for layer 0),
and the layer then uses g = logaddexp(log lb, log1p(-lb) + logsigmoid(f)). The mixer contract passes no
model-level tensors, so this mixer is HGRN2Attention called without one: g = logsigmoid(f). Adding it
would need that parameter on LoopedLM. Left padding: pad inputs are zero, so i = 0 and nothing is written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt2.mixers.base import SeqInfo, ShortConv
from lt2.mixers.gla import GatedLinearMixer, GLACache
from lt2.model.fuse import project
from lt2.model.layers import RMSNorm
from lt2.model.pattern import MixerSpec


class HGRN2(GatedLinearMixer):
    conv_names = ("q_conv1d", "f_conv1d", "i_conv1d")
    input_projections = ("q_proj", "f_proj", "i_proj")  # one matmul once fused (lt2.model.fuse)

    def __init__(self, args, layer_idx: int):
        super().__init__()
        lin = args.linear
        self.layer_idx = layer_idx
        H, Dk = lin.n_heads, lin.head_dim
        self.n_heads, self.head_k_dim, self.head_v_dim = H, Dk, args.dim // H
        self.forget_dim = H * Dk
        self.q_proj = nn.Linear(args.dim, self.forget_dim, bias=False)
        self.f_proj = nn.Linear(args.dim, self.forget_dim, bias=False)
        self.i_proj = nn.Linear(args.dim, args.dim, bias=False)
        if lin.conv_size > 0:
            self.q_conv1d = ShortConv(self.forget_dim, lin.conv_size, activation=False)
            self.f_conv1d = ShortConv(self.forget_dim, lin.conv_size, activation=False)
            self.i_conv1d = ShortConv(args.dim, lin.conv_size, activation=False)
        else:
            self.q_conv1d = self.f_conv1d = self.i_conv1d = None
        self.g_norm = RMSNorm(args.dim, lin.norm_eps)
        self.o_proj = nn.Linear(args.dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: GLACache | None, spec: MixerSpec) -> torch.Tensor:
        """x [B, T, C] (or [1, total, C] with seq.cu_seqlens) -> [B, T, C]; `cache` continues the sequence in place."""
        B, T, C = x.shape
        H, Dk, Dv = self.n_heads, self.head_k_dim, self.head_v_dim
        q, f, i = self.convolve(project(self, x, self.input_projections), seq, cache)
        g = F.logsigmoid(f.to(torch.promote_types(f.dtype, torch.float32)))  # [B, T, H*Dk], fp32 gate
        k = -torch.expm1(g)  # 1 - forget gate, without cancellation for gates near 1
        o = self.recur(
            F.silu(q).view(B, T, H, Dk),
            k.to(x.dtype).view(B, T, H, Dk),
            i.view(B, T, H, Dv),
            g.view(B, T, H, Dk),
            seq,
            cache,
        )
        return self.o_proj(self.g_norm(o.reshape(B, T, C)))
