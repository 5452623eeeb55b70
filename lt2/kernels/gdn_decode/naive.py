"""The oracle: one gated-DeltaNet decode step, from the input projections to the gated output norm, in PyTorch.

Per sequence and head, for one new token (everything in fp32, fp64 for fp64 inputs):

    q = l2norm(silu(conv(q_in))) * Dk^-0.5      l2norm(x) = x / sqrt(sum(x^2) + 1e-6), as fla's kernels
    k = l2norm(silu(conv(k_in)))
    v = silu(conv(v_in))
    beta = sigmoid(b),  g = -exp(A_log) * softplus(a + dt_bias)          (log decay, <= 0)
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

L2NORM_EPS = 1e-6  # fla's l2norm: eps inside the square root


def conv_step(x: torch.Tensor, cache: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [B, C], cache [B, K-1, C] (updated in place), weight [C, K] -> silu(conv) [B, C] in fp32 (fp64)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    window = torch.cat([cache.to(dtype), x.to(dtype)[:, None]], dim=1)  # [B, K, C], oldest first
    y = (window * weight.to(dtype).t()[None]).sum(1)
    cache.copy_(window[:, 1:])
    return F.silu(y)


def naive_gdn_decode_step(
    *,
    q_in: torch.Tensor,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
    conv_q: torch.Tensor,
    conv_k: torch.Tensor,
    conv_v: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    gate: torch.Tensor | None,
    o_norm_weight: torch.Tensor,
    eps: float,
    state: torch.Tensor,
) -> torch.Tensor:
    """One GDN decode step; updates conv_q/conv_k/conv_v and state in place (same contract as the fused kernel).

    Args:
        q_in, k_in: [B, H*Dk] the token's q/k projections (before the short convolution).
        v_in: [B, H*Dv] its v projection.
        conv_q, conv_k: [B, K-1, H*Dk], conv_v: [B, K-1, H*Dv] the previous K-1 inputs, oldest first.
        w_q, w_k: [H*Dk, K], w_v: [H*Dv, K] depthwise conv weights; [:, -1] multiplies the new token.
        a: [B, H] W_a x; b: [B, H] W_b x; A_log, dt_bias: [H].
        gate: [B, H*Dv] W_g x, or None for an ungated norm.
        o_norm_weight: [Dv] weight of the per-head RMSNorm; eps its epsilon.
        state: [B, H, Dk, Dv] fp32 recurrent state.
    Returns:
        y [B, H*Dv] in q_in's dtype, the input of the output projection.

    >>> B, H, Dk, Dv, K = 2, 4, 8, 16, 4
    >>> r = torch.randn
    >>> y = naive_gdn_decode_step(q_in=r(B, H * Dk), k_in=r(B, H * Dk), v_in=r(B, H * Dv),
    ...     conv_q=r(B, K - 1, H * Dk), conv_k=r(B, K - 1, H * Dk), conv_v=r(B, K - 1, H * Dv),
    ...     w_q=r(H * Dk, K), w_k=r(H * Dk, K), w_v=r(H * Dv, K), a=r(B, H), b=r(B, H), A_log=r(H),
    ...     dt_bias=r(H), gate=r(B, H * Dv), o_norm_weight=r(Dv), eps=1e-5, state=r(B, H, Dk, Dv))
    >>> y.shape
    torch.Size([2, 64])
    """
    B, H, Dk, Dv = state.shape
    dtype = torch.promote_types(q_in.dtype, torch.float32)

    def l2norm(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2NORM_EPS)

    q = l2norm(conv_step(q_in, conv_q, w_q).view(B, H, Dk)) * Dk**-0.5
    k = l2norm(conv_step(k_in, conv_k, w_k).view(B, H, Dk))
    v = conv_step(v_in, conv_v, w_v).view(B, H, Dv)
    beta = torch.sigmoid(b.to(dtype))  # [B, H]
    g = -A_log.to(dtype).exp() * F.softplus(a.to(dtype) + dt_bias.to(dtype))  # [B, H]

    S = state.to(dtype) * g.exp()[..., None, None]  # [B, H, Dk, Dv]
    u = v - torch.einsum("bhk,bhkv->bhv", k, S)  # the delta rule's error per value column
    S = S + torch.einsum("bhk,bhv->bhkv", k, beta[..., None] * u)
    o = torch.einsum("bhk,bhkv->bhv", q, S)  # [B, H, Dv]
    state.copy_(S)

    y = F.rms_norm(o, (Dv,), o_norm_weight.to(dtype), eps)
    if gate is not None:
        y = y * F.silu(gate.to(dtype).view(B, H, Dv))
    return y.reshape(B, H * Dv).to(q_in.dtype)
