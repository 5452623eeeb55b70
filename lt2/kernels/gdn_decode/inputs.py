"""The arguments of one gated-DeltaNet decode step, shared by the oracle, the fused kernel and their callers.

Shapes: B batch, H heads, Dk key dim, Dv value dim, K conv kernel size; projections are [B, H*D].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(kw_only=True)
class GDNDecodeStep:
    """One token's GDN decode step: its projections, the layer's weights, the conv caches and the state.

    Keyword-only: many fields share a shape, and a swap must not run silently. A step function updates
    the IN_PLACE tensors (the conv caches and the state) in place and returns y [B, H*Dv] in q_in's dtype.

    Fields:
        q_in, k_in: [B, H*Dk] the token's q/k projections (before the short convolution).
        v_in: [B, H*Dv] its v projection (same dtype as q_in and k_in).
            The token's inputs (q_in, k_in, v_in, a, b, gate) may have any row stride, e.g. column slices of
            fused projections (lt2.model.fuse); the fused kernel reads them in place.
        conv_q, conv_k: [B, K-1, H*Dk], conv_v: [B, K-1, H*Dv] the previous K-1 inputs, oldest first;
            shifted in place (contiguous).
        w_q, w_k: [H*Dk, K], w_v: [H*Dv, K] depthwise conv weights; [:, -1] multiplies the new token.
        a: [B, H] W_a x; b: [B, H] W_b x; A_log, dt_bias: [H].
        gate: [B, H*Dv] W_g x, or None for an ungated norm.
        o_norm_weight: [Dv] the per-head RMSNorm weight; eps its epsilon.
        state: [B, H, Dk, Dv] fp32 recurrent state, updated in place (contiguous).
        allow_neg_eigval: beta = 2 sigmoid(b) instead of sigmoid(b) (the mixer's linear.allow_neg_eigval).
    """

    IN_PLACE: ClassVar[tuple[str, ...]] = ("conv_q", "conv_k", "conv_v", "state")  # updated by every step
    TOKEN: ClassVar[tuple[str, ...]] = ("q_in", "k_in", "v_in", "a", "b", "gate")  # new with every token

    q_in: torch.Tensor
    k_in: torch.Tensor
    v_in: torch.Tensor
    conv_q: torch.Tensor
    conv_k: torch.Tensor
    conv_v: torch.Tensor
    w_q: torch.Tensor
    w_k: torch.Tensor
    w_v: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    A_log: torch.Tensor
    dt_bias: torch.Tensor
    gate: torch.Tensor | None
    o_norm_weight: torch.Tensor
    eps: float
    state: torch.Tensor
    allow_neg_eigval: bool = False

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """Every tensor field by name (gate may be None): all but eps and allow_neg_eigval."""
        scalars = ("eps", "allow_neg_eigval")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in scalars}

    def clone_in_place(self) -> GDNDecodeStep:
        """The same step with its own copies of the IN_PLACE tensors: run it beside this one to compare."""
        return dataclasses.replace(self, **{name: getattr(self, name).clone() for name in self.IN_PLACE})

    def with_token(self, other: GDNDecodeStep) -> GDNDecodeStep:
        """The next step: `other`'s TOKEN inputs with this step's weights, caches and state."""
        return dataclasses.replace(self, **{name: getattr(other, name) for name in self.TOKEN})
