"""Kimi Delta Attention (Kimi Linear, 2025): the delta rule with a decay per head, token and key channel.

    g_t = -exp(A_log) * softplus(W_f2 W_f1 x_t + dt_bias)  [B, T, H, Dk], log space; W_f1 a rank-Dv bottleneck
    y   = W_o (RMSNorm_per_head(o) * sigmoid(W_g2 W_g1 x + b_g))

Parameterised and initialised as fla 0.6's KimiDeltaAttention: f_proj and g_proj are two-layer low-rank
projections (rank = value head dim; g_proj's second layer has a bias), A_log [H] with exp(A_log) ~ U(1, 16),
dt_bias [H * Dk] with softplus(dt_bias) log-uniform in [0.001, 0.1]. The output gate is always on.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lt2.mixers.delta import DeltaRuleMixer
from lt2.mixers.norms import GatedRMSNorm, dt_bias_init


class KimiDeltaAttention(DeltaRuleMixer):
    def __init__(self, args, layer_idx: int):
        super().__init__(args, layer_idx)
        H, Dk, Dv = self.n_heads, self.head_dim, self.head_v_dim
        self.f_proj = nn.Sequential(nn.Linear(args.dim, Dv, bias=False), nn.Linear(Dv, H * Dk, bias=False))
        self.A_log = nn.Parameter(torch.empty(H))  # [H]
        self.dt_bias = nn.Parameter(torch.empty(H * Dk))  # [H * Dk], one per key channel
        self.A_log._no_weight_decay = self.dt_bias._no_weight_decay = True  # fla's flag for the optimiser

    def output_layers(self, args) -> tuple[nn.Module, GatedRMSNorm]:
        if not args.linear.use_gate:
            warnings.warn(
                "linear.use_gate = False is ignored by kda: its sigmoid output gate is part of the layer", stacklevel=4
            )
        Dv = self.head_v_dim
        g_proj = nn.Sequential(nn.Linear(args.dim, Dv, bias=False), nn.Linear(Dv, self.value_dim, bias=True))
        return g_proj, GatedRMSNorm(Dv, args.linear.norm_eps, activation="sigmoid")

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())
            self.dt_bias.copy_(dt_bias_init(self.dt_bias.numel()))

    def log_decay(self, x: torch.Tensor, proj: dict) -> torch.Tensor:
        """x [B, T, C] -> g [B, T, H, Dk] fp32."""
        B, T, _ = x.shape
        f = self.f_proj(x).float().view(B, T, self.n_heads, self.head_dim)
        bias = self.dt_bias.float().view(self.n_heads, self.head_dim)
        return -self.A_log.float().exp()[:, None] * F.softplus(f + bias)
