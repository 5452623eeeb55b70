"""The delta-rule family (DeltaNet, Gated DeltaNet, Kimi Delta Attention): one recurrence, three decays.

    naive_recurrent_delta_rule      the oracle: a per-token loop in fp32 (also the CPU decode step)
    chunk_delta_rule                chunked WY form in PyTorch with autograd (CPU training / prefill)
    fla_chunk_delta_rule            fla's chunked Triton kernels (CUDA training / prefill)
    fla_fused_recurrent_delta_rule  fla's recurrent Triton kernels (CUDA decode)

All take q, k [B, T, H, K], v [B, T, H, V], beta [B, T, H] and g None | [B, T, H] | [B, T, H, K].
"""

from lt2.kernels.delta_rule.chunk import chunk_delta_rule
from lt2.kernels.delta_rule.fla import fla_chunk_delta_rule, fla_fused_recurrent_delta_rule
from lt2.kernels.delta_rule.naive import naive_recurrent_delta_rule

__all__ = [
    "chunk_delta_rule",
    "fla_chunk_delta_rule",
    "fla_fused_recurrent_delta_rule",
    "naive_recurrent_delta_rule",
]
