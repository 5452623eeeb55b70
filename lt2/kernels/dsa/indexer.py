"""The lightning indexer: scores, top-k key selection, and the training signal of its KL objective.

Scores are dense torch matmuls chunked over queries, so memory stays at one [B, HI, rows, Tk] block
whatever the sequence length; the same code runs on CPU and GPU (on GPU these are tensor-core matmuls
and a fraction of the attention cost). The selection uses `lt2.kernels.topk`, whose tie rule keeps
decoding identical to the forward pass.

The indexer is trained only by DeepSeek-V3.2's objective L_I = mean_t KL(p_t || softmax(I_t)), where
p_t is the main attention's distribution over the selected keys (detached). Its gradient with respect
to the selected scores is simply (softmax(I_t) - p_t) / N, so the mixer computes that in the forward
pass and `inject_index_grad` adds it to the indexer's parameters during the model's backward pass,
without changing what the mixer returns. Its backward re-derives the indexer gradients from the
selected-score gradient with dense chunked matmuls, so no [B, T, S, DI] gather is ever stored.

Shapes: B batch, Tq queries, Tk keys, HI indexer heads, DI indexer head dim, S selected keys.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lt2.kernels.common import compute_dtype
from lt2.kernels.dsa.naive import naive_index_scores
from lt2.kernels.topk import select_topk

# Elements of one [B, HI, rows, Tk] fp32 score block (128 MiB); sets the query chunk of every loop here.
CHUNK_ELEMENTS = 2**25


def _rows_per_chunk(B: int, HI: int, Tk: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, B * HI * Tk))


def index_topk(
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    topk: int,
    visible: Callable[[slice], torch.Tensor],
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Select the `topk` visible keys with the highest indexer scores for every query (no autograd).

    q [B, Tq, HI, DI], k [B, Tk, DI], w [B, Tq, HI]; visible(rows) -> bool [B or 1, len(rows), Tk] says which
    keys the queries `rows` may see (causality, padding, documents). Returns indices [B, Tq, S] int32 with
    S = min(topk, Tk) and -1 where a query sees fewer than S keys, and their scores [B, Tq, S] (fp32, fp64
    for fp64 inputs; 0 at unused slots).

    >>> q, k, w = torch.randn(1, 5, 2, 8), torch.randn(1, 5, 8), torch.randn(1, 5, 2)
    >>> causal = lambda rows: torch.ones(5, 5, dtype=torch.bool).tril()[None, rows]
    >>> index_topk(q, k, w, 3, causal)[0][0, 0].sort().values  # the first query sees one key
    tensor([-1, -1,  0], dtype=torch.int32)
    """
    B, Tq = q.shape[:2]
    Tk = k.shape[1]
    S = min(topk, Tk)
    indices = torch.empty(B, Tq, S, dtype=torch.int32, device=q.device)
    scores = torch.empty(B, Tq, S, dtype=compute_dtype(q), device=q.device)
    step = _rows_per_chunk(B, q.shape[2], Tk)
    with torch.no_grad():
        for start in range(0, Tq, step):
            rows = slice(start, min(start + step, Tq))
            dense = naive_index_scores(q[:, rows], k, w[:, rows], scale)  # [B, n, Tk]
            chosen = select_topk(dense, visible(rows), S)  # [B, n, S]
            indices[:, rows] = chosen.int()
            scores[:, rows] = dense.gather(-1, chosen.clamp(min=0)).masked_fill(chosen < 0, 0.0)
    return indices, scores


def index_kl(scores: torch.Tensor, target: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The indexer objective and its gradient with respect to the selected scores.

    scores [B, Tq, S] indexer scores of the selected keys, target [B, Tq, S] attention distribution over
    them (rows sum to 1), indices [B, Tq, S] (-1 = unused slot). Returns (mean over queries of
    KL(target || softmax(scores)), its gradient [B, Tq, S] = (softmax(scores) - target) / (B * Tq)).
    """
    valid = indices >= 0
    log_q = scores.masked_fill(~valid, float("-inf")).log_softmax(-1)
    target = target.to(log_q.dtype).masked_fill(~valid, 0.0)
    log_p = target.clamp_min(torch.finfo(target.dtype).tiny).log()
    n = scores.shape[0] * scores.shape[1]
    kl = torch.where(target > 0, target * (log_p - log_q), 0.0).sum() / n
    grad = (log_q.exp() - target).masked_fill(~valid, 0.0) / n
    return kl, grad


def index_scores_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    indices: torch.Tensor,
    grad_scores: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dw) of sum(grad_scores * I[indices]) for I = naive_index_scores(q, k, w, scale).

    With a = q_j . k_s:  dw_j = scale * sum_s g_s relu(a);  da = g_s * scale * w_j * [a > 0];
    dq_j = sum_s da k_s;  dk_s = sum_{t, j} da q_j. grad_scores is scattered into a dense [B, rows, Tk]
    block (zero at unselected keys) so that everything is a matmul over query chunks.
    """
    B, Tq, HI, DI = q.shape
    Tk = k.shape[1]
    scale = DI**-0.5 if scale is None else scale
    ct = compute_dtype(q)
    qf, kf, wf = q.to(ct), k.to(ct), w.to(ct)
    dq = torch.zeros_like(qf)
    dk = torch.zeros_like(kf)
    dw = torch.zeros_like(wf)
    step = _rows_per_chunk(B, HI, Tk)
    for start in range(0, Tq, step):
        rows = slice(start, min(start + step, Tq))
        idx = indices[:, rows].long()
        # unused slots (-1) go to a spare column Tk that is dropped
        dense = torch.zeros(B, idx.shape[1], Tk + 1, dtype=ct, device=q.device)
        dense.scatter_add_(-1, idx.where(idx >= 0, Tk), grad_scores[:, rows].to(ct))
        dense = dense[..., :Tk]  # [B, n, Tk]
        logits = torch.einsum("bqhd,bkd->bhqk", qf[:, rows], kf)  # [B, HI, n, Tk]
        dw[:, rows] = scale * torch.einsum("bhqk,bqk->bqh", logits.relu(), dense)
        d_logits = (logits > 0) * dense[:, None] * (scale * wf[:, rows]).permute(0, 2, 1)[..., None]
        dq[:, rows] = torch.einsum("bhqk,bkd->bqhd", d_logits, kf)
        dk += torch.einsum("bhqk,bqhd->bkd", d_logits, qf[:, rows])
    return dq.to(q.dtype), dk.to(k.dtype), dw.to(w.dtype)


class _InjectIndexGrad(torch.autograd.Function):
    """Identity on `out`; in backward, hands the precomputed indexer-score gradient to q, k and w."""

    @staticmethod
    def forward(ctx, out, q, k, w, indices, grad_scores, scale):
        ctx.save_for_backward(q, k, w, indices, grad_scores)
        ctx.scale = scale
        return out.view_as(out)

    @staticmethod
    def backward(ctx, d_out):
        q, k, w, indices, grad_scores = ctx.saved_tensors
        dq = dk = dw = None
        if any(ctx.needs_input_grad[1:4]):
            dq, dk, dw = index_scores_backward(q, k, w, indices, grad_scores, ctx.scale)
        return d_out, dq, dk, dw, None, None, None


def inject_index_grad(
    out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    indices: torch.Tensor,
    grad_scores: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Return `out` unchanged; when the graph's backward reaches it, add d(loss)/d(q, k, w) of an indexer loss.

    grad_scores [B, Tq, S] is d(loss)/d(selected scores) (e.g. coef * index_kl(...)[1]); q, k, w are the
    indexer inputs of `index_topk` and must be the tensors the indexer parameters produced. The injected
    gradient does not depend on the gradient flowing into `out`, so it is not scaled with the main loss.
    """
    return _InjectIndexGrad.apply(out, q, k, w, indices, grad_scores, scale)
