"""DeepSeek Sparse Attention: the lightning indexer, top-k key selection and attention over the selected keys.

    naive_index_scores / naive_sparse_attention / naive_selected_probs   the oracles (CPU path of the mixer)
    index_topk / index_kl / inject_index_grad                            the indexer (torch, chunked; all devices)
    parallel_sparse_attention / parallel_selected_probs                  Triton kernels (CUDA training, prefill, decode)

The Triton names load on first use, so CPU-only installs without triton can import this package.
Layout [B, T, H, D] as in fla; the math is in README.md beside this file.
"""

from __future__ import annotations

from lt2.kernels.common import lazy_attributes
from lt2.kernels.dsa.indexer import index_kl, index_scores_backward, index_topk, inject_index_grad
from lt2.kernels.dsa.naive import naive_index_scores, naive_selected_probs, naive_sparse_attention

_TRITON = ("parallel_selected_probs", "parallel_sparse_attention")
__getattr__ = lazy_attributes(globals(), "lt2.kernels.dsa.parallel", _TRITON)


__all__ = [
    "index_kl",
    "index_scores_backward",
    "index_topk",
    "inject_index_grad",
    "naive_index_scores",
    "naive_selected_probs",
    "naive_sparse_attention",
    "parallel_selected_probs",
    "parallel_sparse_attention",
]
