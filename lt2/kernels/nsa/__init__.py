"""Native Sparse Attention: compressed, selected and sliding-window branches mixed by per-head gates.

    naive_nsa    dense PyTorch oracle; the CPU path, and the prefill-onto-cache and decode path everywhere
    fla_nsa      fla 0.6's parallel_nsa (+ flex_attention window) for CUDA training and prefill

Layout [B, T, H, D] as in fla; the math is in README.md beside this file.
"""

from lt2.kernels.nsa.fla import fla_nsa, fla_nsa_unsupported
from lt2.kernels.nsa.naive import block_means, naive_nsa

__all__ = ["block_means", "fla_nsa", "fla_nsa_unsupported", "naive_nsa"]
