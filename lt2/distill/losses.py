"""Distillation losses: full-vocabulary KL computed in chunks, and the attention-output alignment MSE.

KL(teacher || student) per token over the whole vocabulary, averaged over tokens:

    KL = sum_v p_t(v) (log p_t(v) - log p_s(v)),      d KL / d logits_s = p_s - p_t

A [tokens x vocab] fp32 tensor is never formed: `chunked_kl` walks the tokens in chunks of `chunk` and per
chunk forms both models' logits (in the compute dtype), their log-softmax in fp32, the loss and, in the same
pass, the gradients w.r.t. the student's hidden states and head weight from the closed form above. Backward
only scales the stored gradients. The teacher side carries no gradient. The chunk walk is
lt2.train.loss.chunked_head_loss, which the chunked cross-entropy runs too.

Shapes: N tokens, C model dim (the teacher's may differ), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lt2.train.loss import chunked_head_loss


def chunk_kl_and_grad(
    h: torch.Tensor, weight: torch.Tensor, h_t: torch.Tensor, weight_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: student h [n, C] / weight [V, C], teacher h_t [n, C'] / weight_t [V, C'] ->
    (sum over the n tokens of KL(p_t || p_s), fp32; dKL/dlogits_s [n, V] in h's dtype)."""
    log_s = torch.log_softmax((h @ weight.t()).float(), dim=-1)
    log_t = torch.log_softmax((h_t @ weight_t.t()).float(), dim=-1)
    p_t = log_t.exp()
    loss = (p_t * (log_t - log_s)).sum()
    return loss, (log_s.exp() - p_t).to(h.dtype)


def chunked_kl(
    h: torch.Tensor,
    weight: torch.Tensor,
    h_t: torch.Tensor,
    weight_t: torch.Tensor,
    chunk: int = 4096,
    chunk_fn: Callable | None = None,
) -> torch.Tensor:
    """Mean over N tokens of KL(softmax(h_t @ weight_t.T) || softmax(h @ weight.T)), fp32 scalar.

    Equals `naive_kl` in value and in gradients w.r.t. h and weight; the teacher inputs get none.
    `chunk_fn` may be a compiled `chunk_kl_and_grad`.

    >>> loss = chunked_kl(h_s.view(-1, C), student.head.weight, h_t.view(-1, C), teacher.head.weight, 4096)
    """
    if h.ndim != 2 or h_t.ndim != 2 or h.shape[0] != h_t.shape[0]:
        raise ValueError(f"h and h_t must be [N, C] with the same N, got {tuple(h.shape)} and {tuple(h_t.shape)}")
    if weight.shape[0] != weight_t.shape[0]:
        raise ValueError(f"student and teacher vocabularies differ: {weight.shape[0]} vs {weight_t.shape[0]}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    h_t, weight_t = h_t.detach(), weight_t.detach()
    if not (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):
        with torch.no_grad():
            total = sum(
                chunk_kl_and_grad(h[i : i + chunk], weight, h_t[i : i + chunk], weight_t)[0]
                for i in range(0, h.shape[0], chunk)
            )
        return total / h.shape[0]
    return chunked_head_loss(h, weight, chunk_fn or chunk_kl_and_grad, rows=(h_t,), shared=(weight_t,), chunk=chunk)


def naive_kl(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The reference: mean over tokens of KL(teacher || student) from full logits [N, V] (fp32)."""
    return F.kl_div(
        torch.log_softmax(logits.float(), -1),
        torch.log_softmax(teacher_logits.float(), -1),
        log_target=True,
        reduction="batchmean",
    )


def alignment_mse(outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over (loop, layer) pairs of the mean squared error of a student mixer's output against the
    teacher attention output it replaces; each [B, T, C] (fp32 reduction)."""
    if len(outputs) != len(targets) or not outputs:
        raise ValueError(f"need one target per output, got {len(outputs)} outputs and {len(targets)} targets")
    return sum(F.mse_loss(o.float(), t.float()) for o, t in zip(outputs, targets, strict=True)) / len(outputs)
