"""The oracle: one gated-DeltaNet decode step, from the input projections to the gated output norm, in PyTorch.

Per sequence and head, for one new token (everything in fp32, fp64 for fp64 inputs):

    q = l2norm(silu(conv(q_in))) * Dk^-0.5      l2norm(x) = x / sqrt(sum(x^2) + 1e-6), as fla's kernels
    k = l2norm(silu(conv(k_in)))
    v = silu(conv(v_in))
    beta = sigmoid(b) (x 2 with allow_neg_eigval),  g = -exp(A_log) * softplus(a + dt_bias)   (g <= 0)
    S = exp(g) S;  u = v - S^T k;  S = S + beta k u^T;  o = S^T q       S: [Dk, Dv]
    y = rms_norm(o, o_norm_weight, eps) * silu(gate)

conv is the depthwise causal short convolution of lt2.mixers.base.ShortConv at one token: the cache holds
the previous K-1 inputs (oldest first), weight[:, -1] multiplies the new token, and the cache shifts by one.
This is the same math as the GatedDeltaNet mixer's decode branch (ShortConv + naive_recurrent_delta_rule
with use_qk_l2norm + GatedRMSNorm), written out step by step in one place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lt2.kernels.delta_rule.utils import l2norm
from lt2.kernels.gdn_decode.inputs import GDNDecodeStep


def conv_step(x: torch.Tensor, cache: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [B, C], cache [B, K-1, C] (updated in place), weight [C, K] -> silu(conv) [B, C] in fp32 (fp64)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    window = torch.cat([cache.to(dtype), x.to(dtype)[:, None]], dim=1)  # [B, K, C], oldest first
    y = (window * weight.to(dtype).t()[None]).sum(1)
    cache.copy_(window[:, 1:])
    return F.silu(y)


def naive_gdn_decode_step(step: GDNDecodeStep) -> torch.Tensor:
    """One GDN decode step; updates the conv caches and the state in place (same contract as the fused kernel).

    Returns y [B, H*Dv] in q_in's dtype, the input of the output projection. The fields are documented
    on GDNDecodeStep.

    >>> from lt2.testing import random_gdn_decode_step
    >>> naive_gdn_decode_step(random_gdn_decode_step(B=2, H=4, Dk=8, Dv=16, K=4)).shape
    torch.Size([2, 64])
    """
    B, H, Dk, Dv = step.state.shape
    dtype = torch.promote_types(step.q_in.dtype, torch.float32)

    q = l2norm(conv_step(step.q_in, step.conv_q, step.w_q).view(B, H, Dk)) * Dk**-0.5
    k = l2norm(conv_step(step.k_in, step.conv_k, step.w_k).view(B, H, Dk))
    v = conv_step(step.v_in, step.conv_v, step.w_v).view(B, H, Dv)
    beta = torch.sigmoid(step.b.to(dtype)) * (2.0 if step.allow_neg_eigval else 1.0)  # [B, H]
    g = -step.A_log.to(dtype).exp() * F.softplus(step.a.to(dtype) + step.dt_bias.to(dtype))  # [B, H]

    S = step.state.to(dtype) * g.exp()[..., None, None]  # [B, H, Dk, Dv]
    u = v - torch.einsum("bhk,bhkv->bhv", k, S)  # the delta rule's error per value column
    S = S + torch.einsum("bhk,bhv->bhkv", k, beta[..., None] * u)
    o = torch.einsum("bhk,bhkv->bhv", q, S)  # [B, H, Dv]
    step.state.copy_(S)

    y = F.rms_norm(o, (Dv,), step.o_norm_weight.to(dtype), step.eps)
    if step.gate is not None:
        y = y * F.silu(step.gate.to(dtype).view(B, H, Dv))
    return y.reshape(B, H * Dv).to(step.q_in.dtype)
