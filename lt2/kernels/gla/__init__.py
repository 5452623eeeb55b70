"""Gated linear attention (Mamba2 / SSD, HGRN2, RetNet): one recurrence, three kinds of decay.

    naive_recurrent_gla       the oracle: a per-token loop in fp32 (also the CPU decode step)
    chunk_gla                 chunked form in PyTorch with autograd (CPU training / prefill)
    fla_chunk_gla             fla's chunked Triton kernels (CUDA training / prefill)
    fla_fused_recurrent_gla   fla's recurrent Triton kernel (CUDA decode)

All take q, k [B, T, H, K], v [B, T, H, V] and g (log decay) [B, T, H] | [B, T, H, K] | [H].
"""

from lt2.kernels.gla.chunk import chunk_gla
from lt2.kernels.gla.fla import fla_chunk_gla, fla_fused_recurrent_gla
from lt2.kernels.gla.naive import naive_recurrent_gla

__all__ = ["chunk_gla", "fla_chunk_gla", "fla_fused_recurrent_gla", "naive_recurrent_gla"]
