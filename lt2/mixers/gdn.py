"""Gated DeltaNet (Yang et al., 2024): the delta rule with one scalar decay per head and token.

    g_t = -exp(A_log) * softplus(W_a x_t + dt_bias)        [B, T, H], log space, Mamba2's parameterisation

A_log and dt_bias are initialised as in fla's GatedDeltaNet: exp(A_log) ~ U(0, 16) and softplus(dt_bias)
log-uniform in [0.001, 0.1]. Output: per-head RMSNorm times silu(W_g x) when use_gate, else the plain norm.
The 1.3B flagship uses 16 heads of head_dim 96 with expand_v 2.

One-token decode on CUDA runs everything between the input and output projections (short convs, gates,
state update, gated norm) in one Triton kernel (lt2/kernels/gdn_decode): unfused, that step is ~20 tiny
launches per layer and loop, which dominate a looped model's decode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lt2.kernels import (
    backend,
    gdn_decode,  # Triton loads on first use
)
from lt2.mixers.base import SeqInfo
from lt2.mixers.delta import DeltaRuleCache, DeltaRuleMixer
from lt2.mixers.norms import dt_bias_init
from lt2.model.pattern import MixerSpec


class GatedDeltaNet(DeltaRuleMixer):
    input_projections = (*DeltaRuleMixer.input_projections, "a_proj")

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
            self.dt_bias.copy_(dt_bias_init(self.n_heads))

    def log_decay(self, x: torch.Tensor, proj: dict) -> torch.Tensor:
        """x [B, T, C] and its projections -> g [B, T, H] fp32, from a_proj's [B, T, H]."""
        return -self.A_log.float().exp() * F.softplus(proj["a_proj"].float() + self.dt_bias.float())

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: DeltaRuleCache | None, spec: MixerSpec) -> torch.Tensor:
        if cache is not None and x.shape[1] == 1 and self.q_conv1d is not None and backend.use_fast(x, "triton"):
            return self._fused_decode_step(x, cache)
        return super().forward(x, seq, cache, spec)

    def _fused_decode_step(self, x: torch.Tensor, cache: DeltaRuleCache) -> torch.Tensor:
        """x [B, 1, C] -> [B, 1, C]: the fused kernel between the projections; caches updated in place."""
        return self.o_proj(gdn_decode.fused_gdn_decode_step(self.decode_step_inputs(x[:, 0], cache)))[:, None]

    def decode_step_inputs(self, h: torch.Tensor, cache: DeltaRuleCache) -> gdn_decode.GDNDecodeStep:
        """h [B, C] one token -> its decode step between the projections, on the cache's conv caches and state."""
        proj = self.projections(h)
        return gdn_decode.GDNDecodeStep(
            q_in=proj["q_proj"],
            k_in=proj["k_proj"],
            v_in=proj["v_proj"],
            conv_q=cache.conv_q,
            conv_k=cache.conv_k,
            conv_v=cache.conv_v,
            w_q=self.q_conv1d.weight,
            w_k=self.k_conv1d.weight,
            w_v=self.v_conv1d.weight,
            a=proj["a_proj"],
            b=proj["b_proj"],
            A_log=self.A_log,
            dt_bias=self.dt_bias,
            gate=proj["g_proj"],
            o_norm_weight=self.o_norm.weight,
            eps=self.o_norm.eps,
            state=cache.state,
            allow_neg_eigval=self.allow_neg_eigval,
        )
