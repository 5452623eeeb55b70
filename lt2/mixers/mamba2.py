"""Mamba2 (Dao & Gu, 2024): the SSD layer as gated linear attention with one decay per head and token.

    z, xBC, dt = W_in x                                    [B, T, Di], [B, T, Di + 2 G N], [B, T, H]
    x, B, C    = silu(conv(xBC))                           x [B, T, H, P]; B, C [B, T, G, N] -> heads
    dt         = softplus(dt + dt_bias)                    [B, T, H]
    y          = gla(q=C, k=B * dt, v=x, g=-exp(A_log) * dt, scale=1) + D * x        [B, T, H, P]
    out        = W_out RMSNorm_group(y * silu(z))          [B, T, C]

Di = expand * dim inner channels, H = Di / P heads of P = head_dim channels, N = d_state, G = n_groups;
head h reads B/C group h // (H / G), as mamba_ssm's kernels do. The state per head is [N, P].

Parameterisation and init follow Mamba2 / fla's Mamba2 layer: A = exp(A_log) ~ U(1, 16), softplus(dt_bias)
log-uniform in [dt_min, dt_max] (floor 1e-4), D = 1, RMSNormGated with norm_before_gate=False and one
group per B/C group. Parameter names match fla's (in_proj, conv1d, dt_bias, A_log, D, norm, out_proj).

Differences from fla's layer, both on purpose: the depthwise convolution has no bias (fla's has one), so
that the zeroed pad inputs of left padding keep x = B = 0 and the state exactly zero through pads; and the
chunk is 64 tokens, not 256 (the result does not depend on it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt2.mixers.base import SeqInfo, ShortConv
from lt2.mixers.gla import GatedLinearMixer, GLACache
from lt2.mixers.norms import GatedRMSNorm, dt_bias_init
from lt2.model.pattern import MixerSpec

A_INIT_RANGE = (1.0, 16.0)  # Mamba2's A ~ U(1, 16)


class Mamba2(GatedLinearMixer):
    conv_names = ("conv1d",)

    def __init__(self, args, layer_idx: int):
        super().__init__()
        m = args.mamba2
        self.layer_idx = layer_idx
        self.d_inner = m.expand * args.dim
        H = self.d_inner // m.head_dim
        self.n_heads, self.head_k_dim, self.head_v_dim = H, m.d_state, m.head_dim
        self.n_groups, self.dt_min, self.dt_max = m.n_groups, m.dt_min, m.dt_max
        self.conv_dim = self.d_inner + 2 * m.n_groups * m.d_state
        self.in_proj = nn.Linear(args.dim, self.d_inner + self.conv_dim + H, bias=False)  # [z | xBC | dt]
        self.conv1d = ShortConv(self.conv_dim, m.conv_size)
        self.dt_bias = nn.Parameter(torch.empty(H))  # [H]
        self.A_log = nn.Parameter(torch.empty(H))  # [H]
        self.D = nn.Parameter(torch.empty(H))  # [H] skip connection
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True  # fla's / mamba_ssm's flag for the optimiser
        self.norm = GatedRMSNorm(self.d_inner, args.norm_eps, self.d_inner // m.n_groups, norm_before_gate=False)
        self.out_proj = nn.Linear(self.d_inner, args.dim, bias=False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.A_log.copy_(torch.empty(self.n_heads).uniform_(*A_INIT_RANGE).log())
            self.dt_bias.copy_(dt_bias_init(self.n_heads, self.dt_min, self.dt_max))
            self.D.fill_(1.0)

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: GLACache | None, spec: MixerSpec) -> torch.Tensor:
        """x [B, T, C] (or [1, total, C] with seq.cu_seqlens) -> [B, T, C]; `cache` continues the sequence in place."""
        B, T, _ = x.shape
        H, N, P, G = self.n_heads, self.head_k_dim, self.head_v_dim, self.n_groups
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, H], dim=-1)
        (xbc,) = self.convolve((xbc,), seq, cache)
        xs, b, c = xbc.split([self.d_inner, G * N, G * N], dim=-1)
        xs = xs.view(B, T, H, P)
        b = b.view(B, T, G, N).repeat_interleave(H // G, dim=2)  # [B, T, H, N]
        c = c.view(B, T, G, N).repeat_interleave(H // G, dim=2)  # [B, T, H, N]
        dtype = torch.promote_types(x.dtype, torch.float32)  # the decay in fp32 (fp64 for fp64 models)
        dt = F.softplus(dt.to(dtype) + self.dt_bias.to(dtype))  # [B, T, H]
        g = -torch.exp(self.A_log.to(dtype)) * dt  # [B, T, H] log decay
        k = (b * dt[..., None]).to(x.dtype)  # [B, T, H, N] discretised input matrix
        y = self.recur(c, k, xs, g, seq, cache, scale=1.0)  # [B, T, H, P]
        y = y + xs * self.D.to(xs.dtype)[:, None]
        return self.out_proj(self.norm(y.reshape(B, T, self.d_inner), z))
