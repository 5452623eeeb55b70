"""DeepSeek Sparse Attention: the lightning indexer, top-k key selection and attention over the selected keys.

    naive_index_scores / naive_sparse_attention / naive_selected_probs   the oracles (CPU path of the mixer)
    index_topk / index_kl / inject_index_grad                            the indexer (torch, chunked; all devices)
    parallel_sparse_attention / parallel_selected_probs                  Triton kernels (CUDA training, prefill, decode)

The Triton names load on first use, so CPU-only installs without triton can import this package.
Layout [B, T, H, D] as in fla; the math is in README.md beside this file.
"""

from __future__ import annotations

import importlib

from lt2.kernels.dsa.indexer import index_kl, index_scores_backward, index_topk, inject_index_grad
from lt2.kernels.dsa.naive import naive_index_scores, naive_selected_probs, naive_sparse_attention

_TRITON = ("parallel_selected_probs", "parallel_sparse_attention")


def __getattr__(name: str):
    if name in _TRITON:
        # kept in the namespace: later look-ups are plain attributes, which torch.compile traces without a break
        value = globals()[name] = getattr(importlib.import_module("lt2.kernels.dsa.parallel"), name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
