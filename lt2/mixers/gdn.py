"""Gated DeltaNet (Yang et al., 2024): the delta rule with one scalar decay per head and token.

    g_t = -exp(A_log) * softplus(W_a x_t + dt_bias)        [B, T, H], log space, Mamba2's parameterisation

A_log and dt_bias are initialised as in fla's GatedDeltaNet: exp(A_log) ~ U(0, 16) and softplus(dt_bias)
log-uniform in [0.001, 0.1]. Output: per-head RMSNorm times silu(W_g x) when use_gate, else the plain norm.
The 1.3B flagship uses 16 heads of head_dim 96 with expand_v 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt2.mixers.delta import DeltaRuleMixer, inverse_softplus_dt


class GatedDeltaNet(DeltaRuleMixer):
    def __init__(self, args, layer_idx: int):
        super().__init__(args, layer_idx)
        H = self.n_heads
        self.a_proj = nn.Linear(args.dim, H, bias=False)
        self.A_log = nn.Parameter(torch.empty(H))  # [H]
        self.dt_bias = nn.Parameter(torch.empty(H))  # [H]
        self.A_log._no_weight_decay = self.dt_bias._no_weight_decay = True  # fla's flag for the optimiser

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(0, 16).log())
            self.dt_bias.copy_(inverse_softplus_dt(self.n_heads))

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> g [B, T, H] fp32."""
        return -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
