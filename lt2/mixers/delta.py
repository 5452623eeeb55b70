"""What the delta-rule mixers (gdn, kda, deltanet) share: projections, short convolutions, the cache, the
choice of kernel and the gated output norm. Each family adds only its decay and its output gate.

    q, k = l2norm(silu(conv(W_q x))), l2norm(silu(conv(W_k x)))      [B, T, H, Dk]
    v    = silu(conv(W_v x))                                           [B, T, H, Dv], Dv = expand_v * Dk
    beta = sigmoid(W_b x), times 2 with linear.allow_neg_eigval         [B, T, H]
    g    = family decay (log space) or None                            [B, T, H] | [B, T, H, Dk]
    o    = delta_rule(q, k, v, beta, g)                                [B, T, H, Dv]
    y    = W_o (RMSNorm_per_head(o) * act(gate(x)))                    [B, T, C]

Parameter names follow fla 0.6's layers (q_proj, k_proj, v_proj, b_proj, q_conv1d, ..., o_norm, o_proj),
so that fla checkpoints map by name; fla's conv weights are [C, 1, size] where ours are [C, size].

Kernels: on CUDA with fla installed, fla's chunked kernels (training, prefill) and its recurrent kernel
(one-token decode); elsewhere `chunk_delta_rule` and the per-token oracle, in PyTorch.

Left padding: the block zeroes the mixer input at pads, so q = k = v = 0 there (no biases, silu(0) = 0,
l2norm(0) = 0); a zero key writes nothing and the state stays exactly zero until the first real token,
whatever the decay.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lt2.kernels import backend
from lt2.kernels.delta_rule import (
    chunk_delta_rule,
    fla_chunk_delta_rule,
    fla_fused_recurrent_delta_rule,
    naive_recurrent_delta_rule,
)
from lt2.mixers.base import SeqInfo, ShortConv, recurrent_decode_bytes
from lt2.mixers.norms import GatedRMSNorm
from lt2.model.fuse import project
from lt2.model.pattern import MixerSpec

# Tokens per chunk of the chunked form; the mixing-FLOPs estimate uses it too (fla's default).
CHUNK_SIZE = 64


@dataclass
class DeltaRuleCache:
    """One (loop, layer)'s decode cache, allocated once and updated in place."""

    state: torch.Tensor  # [B, H, Dk, Dv] fp32 recurrent state
    conv_q: torch.Tensor | None  # [B, conv_size - 1, H * Dk] last inputs of the q convolution (None: no conv)
    conv_k: torch.Tensor | None  # [B, conv_size - 1, H * Dk]
    conv_v: torch.Tensor | None  # [B, conv_size - 1, H * Dv]


class DeltaRuleMixer(nn.Module):
    """The delta rule without decay (DeltaNet) and the base of GatedDeltaNet and KimiDeltaAttention.

    Families override `log_decay` (default: no decay) and `output_layers` (default: silu gate when use_gate),
    and add their projections of the input to `input_projections`, which `projections` computes in one
    matmul once fused (lt2.model.fuse).
    """

    input_projections: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "b_proj", "g_proj")

    def __init__(self, args, layer_idx: int):
        super().__init__()
        lin = args.linear
        self.layer_idx = layer_idx
        self.n_heads, self.head_dim, self.head_v_dim = lin.n_heads, lin.head_dim, lin.head_v_dim
        self.key_dim, self.value_dim = self.n_heads * self.head_dim, self.n_heads * self.head_v_dim
        self.q_proj = nn.Linear(args.dim, self.key_dim, bias=False)
        self.k_proj = nn.Linear(args.dim, self.key_dim, bias=False)
        self.v_proj = nn.Linear(args.dim, self.value_dim, bias=False)
        self.b_proj = nn.Linear(args.dim, self.n_heads, bias=False)
        # beta in (0, 2) instead of (0, 1): eigenvalue 1 - beta of I - beta k k^T can be negative (fla's switch)
        self.allow_neg_eigval = lin.allow_neg_eigval
        self.conv_size = lin.conv_size
        if self.conv_size > 0:
            self.q_conv1d = ShortConv(self.key_dim, self.conv_size)
            self.k_conv1d = ShortConv(self.key_dim, self.conv_size)
            self.v_conv1d = ShortConv(self.value_dim, self.conv_size)
        else:
            self.q_conv1d = self.k_conv1d = self.v_conv1d = None
        self.g_proj, self.o_norm = self.output_layers(args)
        self.o_proj = nn.Linear(self.value_dim, args.dim, bias=False)

    # ------------------------------------------------------------ family hooks
    def output_layers(self, args) -> tuple[nn.Module | None, GatedRMSNorm]:
        """The output gate's projection (None: no gate) and the norm; here silu(W_g x) when use_gate."""
        g_proj = nn.Linear(args.dim, self.value_dim, bias=False) if args.linear.use_gate else None
        return g_proj, GatedRMSNorm(self.head_v_dim, args.linear.norm_eps, activation="silu")

    def log_decay(self, x: torch.Tensor, proj: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
        """x [B, T, C] and its `projections` -> log decay g (fp32, <= 0), [B, T, H] or [B, T, H, Dk]; None for
        no decay."""
        return None

    def output_gate(self, gate: torch.Tensor | None) -> torch.Tensor | None:
        """g_proj's output [B, T, H*Dv] (None: no gate) -> gate [B, T, H, Dv] fed to o_norm's activation."""
        if gate is None:
            return None
        return gate.view(*gate.shape[:-1], self.n_heads, self.head_v_dim)

    def beta(self, b: torch.Tensor) -> torch.Tensor:
        """b_proj's output [B, T, H] -> write strength beta [B, T, H]: sigmoid, doubled under allow_neg_eigval."""
        beta = torch.sigmoid(b)
        return beta * 2.0 if self.allow_neg_eigval else beta

    def projections(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """x [..., C] -> {name: its projection [..., out]} for every name in `input_projections` (None: absent)."""
        return dict(zip(self.input_projections, project(self, x, self.input_projections), strict=True))

    # ------------------------------------------------------------------ cache
    def init_cache(self, batch: int, max_len: int, device, dtype, spec: MixerSpec) -> DeltaRuleCache:
        """Fixed-size cache for `batch` sequences; `max_len` does not matter for a recurrent state."""
        state = torch.zeros(batch, self.n_heads, self.head_dim, self.head_v_dim, device=device, dtype=torch.float32)
        if self.q_conv1d is None:
            return DeltaRuleCache(state, None, None, None)
        convs = (conv.init_cache(batch, device, dtype) for conv in (self.q_conv1d, self.k_conv1d, self.v_conv1d))
        return DeltaRuleCache(state, *convs)

    def decode_bytes(self, context: int, spec: MixerSpec, dtype: torch.dtype) -> float:
        return float(recurrent_decode_bytes(self, spec, dtype))

    def mixing_flops(self, context: int, spec: MixerSpec) -> float:
        """Forward sequence-mixing FLOPs per token, excluding projections: the chunked form's matmuls.

        Per head and token, with chunk C: Q K^T and K K^T (2 * 2C Dk), the UT solve's right-hand sides
        (2C (Dv + Dk)), P U (2C Dv), and the three state products W S, (Q e^G) S, K^T U (3 * 2 Dk Dv).
        Independent of `context`: that is the point of a linear mixer.
        """
        dk, dv, c = self.head_dim, self.head_v_dim, CHUNK_SIZE
        return float(self.n_heads * (4 * c * dk + 2 * c * (dv + dk) + 2 * c * dv + 6 * dk * dv))

    # ---------------------------------------------------------------- forward
    def _use_fla(self, x: torch.Tensor, g: torch.Tensor | None) -> bool:
        # fla's chunk_delta_rule (no decay) refuses fp32 inputs; fp32 DeltaNet on CUDA runs the reference.
        return backend.use_fast(x, "fla") and not (g is None and x.dtype == torch.float32)

    def _qkv(self, proj: dict, seq: SeqInfo, cache: DeltaRuleCache | None):
        q, k, v = proj["q_proj"], proj["k_proj"], proj["v_proj"]
        B, T, _ = q.shape
        if self.q_conv1d is None:  # no short convolution: just the activation, as fla does
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        else:
            cu = seq.cu_seqlens
            q = self.q_conv1d(q, cu, cache.conv_q if cache is not None else None)
            k = self.k_conv1d(k, cu, cache.conv_k if cache is not None else None)
            v = self.v_conv1d(v, cu, cache.conv_v if cache is not None else None)
        H = self.n_heads
        return q.view(B, T, H, self.head_dim), k.view(B, T, H, self.head_dim), v.view(B, T, H, self.head_v_dim)

    def forward(self, x: torch.Tensor, seq: SeqInfo, cache: DeltaRuleCache | None, spec: MixerSpec) -> torch.Tensor:
        """x [B, T, C] (or [1, total, C] with seq.cu_seqlens) -> [B, T, C]; `cache` continues the sequence in place."""
        B, T, _ = x.shape
        proj = self.projections(x)
        q, k, v = self._qkv(proj, seq, cache)  # [B, T, H, Dk], [B, T, H, Dk], [B, T, H, Dv]
        beta = self.beta(proj["b_proj"])  # [B, T, H]
        g = self.log_decay(x, proj)
        fast = self._use_fla(x, g)
        kwargs = dict(g=g, use_qk_l2norm=True)
        if cache is None:
            chunked = fla_chunk_delta_rule if fast else chunk_delta_rule
            o, _ = chunked(q, k, v, beta, cu_seqlens=seq.cu_seqlens, **kwargs)
        else:
            if T == 1:  # decode: one step, tensors only (CUDA-graph capturable)
                step = fla_fused_recurrent_delta_rule if fast else naive_recurrent_delta_rule
                o, state = step(q, k, v, beta, initial_state=cache.state, output_final_state=True, **kwargs)
            else:  # prefill, possibly onto an existing cache
                chunked = fla_chunk_delta_rule if fast else chunk_delta_rule
                o, state = chunked(q, k, v, beta, initial_state=cache.state, output_final_state=True, **kwargs)
            cache.state.copy_(state)
        o = self.o_norm(o, self.output_gate(proj["g_proj"]))  # [B, T, H, Dv]
        return self.o_proj(o.reshape(B, T, self.value_dim))
