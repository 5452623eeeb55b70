"""The training loss: next-token cross-entropy computed in chunks, never holding all fp32 logits.

A 128k-token vocabulary at 4 x 4096 tokens per micro-batch makes [16384, 128256] logits: 8.4 GB in fp32,
and as much again for their gradient. `chunked_cross_entropy` walks the tokens in chunks of `chunk`: per
chunk it forms the logits in the compute dtype (bf16 matmul), their log-sum-exp in fp32, and in the same
pass the gradients w.r.t. the hidden states and the head weight (softmax - onehot, the closed form of
d CE / d logits). Backward only scales the stored gradients by the incoming scalar. The chunk walk itself is
`chunked_head_loss`, which lt2.distill.losses runs with a KL chunk instead. Peak extra memory is
one chunk of logits plus a [V, C] fp32 weight-gradient accumulator; the matmul work equals the unfused head
(one forward and two backward matmuls per chunk).

`CausalLMLoss` puts the model and this loss in one `forward`, so that FSDP's hooks on the root module (which
gather the tied embedding / head weight) also cover the head.

Shapes: N tokens (B * T flattened), C model dim, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lt2.model.looped import LoopedLM

ChunkFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def chunk_loss_and_grad(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: h [n, C], weight [V, C], targets [n] -> (sum of CE over the n tokens (fp32), dCE/dlogits [n, V]).

    The gradient is returned in h's dtype; it is what multiplies the weight (for dh) and h (for dW).
    """
    logits = (h @ weight.t()).float()  # [n, V]
    lse = torch.logsumexp(logits, dim=-1)  # [n]
    loss = (lse - logits.gather(1, targets[:, None]).squeeze(1)).sum()
    grad = torch.exp(logits - lse[:, None])  # softmax
    grad.scatter_add_(1, targets[:, None], torch.full_like(lse[:, None], -1.0))  # - onehot
    return loss, grad.to(h.dtype)


def _chunk_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token CE [n] (fp32) of one chunk, without gradients."""
    logits = (h @ weight.t()).float()
    return torch.logsumexp(logits, dim=-1) - logits.gather(1, targets[:, None]).squeeze(1)


class _ChunkedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, chunk: int, chunk_fn: Callable, rows: tuple, shared: tuple):
        n = h.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)  # fp32: summed over chunks
        for start in range(0, n, chunk):
            hc = h[start : start + chunk]
            loss, grad_logits = chunk_fn(hc, weight, *(r[start : start + chunk] for r in rows), *shared)
            total += loss
            grad_h[start : start + chunk] = grad_logits @ weight.to(grad_logits.dtype)
            grad_w += (grad_logits.t() @ hc.to(grad_logits.dtype)).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n, ctx.weight_dtype = n, weight.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return grad_h * scale.to(grad_h.dtype), (grad_w * scale).to(ctx.weight_dtype), None, None, None, None


def chunked_head_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    chunk_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    rows: tuple[torch.Tensor, ...] = (),
    shared: tuple[torch.Tensor, ...] = (),
    chunk: int = 4096,
) -> torch.Tensor:
    """Mean over N tokens of a loss of the head's logits h @ weight.T, walked in chunks of `chunk` tokens.

    h [N, C] and weight [V, C] get gradients; `rows` (each [N, ...], e.g. targets) are cut into the same
    chunks and `shared` tensors passed whole, both without gradients. Per chunk,
    `chunk_fn(h[c], weight, *(r[c] for r in rows), *shared)` returns (the loss summed over the chunk's
    tokens, fp32; d loss / d logits [n, V] in h's dtype); forward turns that into the gradients of h and
    weight at once, so backward only scales them.

    >>> loss = chunked_head_loss(h, weight, chunk_loss_and_grad, rows=(targets,), chunk=4096)  # mean CE
    """
    return _ChunkedHeadLoss.apply(h, weight, chunk, chunk_fn, tuple(rows), tuple(shared))


def chunked_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 4096, chunk_fn: ChunkFn | None = None
) -> torch.Tensor:
    """Mean next-token CE of hidden states h [N, C] under head `weight` [V, C] for targets [N].

    Equals F.cross_entropy((h @ weight.T).float(), targets) in value and in gradients w.r.t. h and weight.
    Without grad it only computes the loss. `chunk_fn` may be a compiled `chunk_loss_and_grad`.

    >>> loss = chunked_cross_entropy(h.view(-1, C), model.embed.weight, targets.view(-1), chunk=4096)
    """
    if h.ndim != 2 or targets.shape != h.shape[:1]:
        raise ValueError(f"h must be [N, C] and targets [N], got {tuple(h.shape)} and {tuple(targets.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if not (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):
        return token_losses(h, weight, targets, chunk).mean()
    return chunked_head_loss(h, weight, chunk_fn or chunk_loss_and_grad, rows=(targets,), chunk=chunk)


@torch.no_grad()
def token_losses(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Per-token CE [N] (fp32) of h [N, C] under `weight` [V, C], chunk by chunk (evaluation)."""
    return torch.cat([_chunk_loss(h[i : i + chunk], weight, targets[i : i + chunk]) for i in range(0, len(h), chunk)])


class CausalLMLoss(nn.Module):
    """A LoopedLM and its next-token loss in one forward (the module FSDP shards as its root).

    forward(inputs [B, T], targets [B, T], doc_start [B, T] | None) -> mean CE (scalar, fp32);
    with reduction="none", per-token CE [B, T] without gradients (validation). In eval mode a random layout
    is scored as LoopedLM.forward scores it: the average of its vote_k placements' logits.
    chunk = 0 uses the plain head: full fp32 logits and F.cross_entropy (the baseline the chunks replace).
    """

    def __init__(self, lm: LoopedLM, chunk: int = 4096):
        super().__init__()
        self.lm = lm
        self.chunk = chunk
        self.chunk_fn: ChunkFn = chunk_loss_and_grad  # parallelize() may swap in a compiled version

    def head_weight(self) -> torch.Tensor:
        return self.lm.embed.weight if self.lm.head is None else self.lm.head.weight

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        doc_start: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        B, T = inputs.shape
        seq = self.lm.seq_info(inputs, doc_start)
        if self.lm.layout.is_random and not self.training:
            # Inference averages the logits of the vote's placements; the head is linear, so that is the
            # head of the averaged hidden states, and the chunked loss applies unchanged.
            draws = self.lm.vote_draws()
            h = sum(self.lm.hidden_states(inputs, seq, specs=d) for d in draws) / len(draws)
        else:
            h = self.lm.hidden_states(inputs, seq)  # [B, T, C]; a random layout draws a placement per call
        flat_h, flat_t = h.reshape(B * T, -1), targets.reshape(B * T)
        if reduction == "none":
            return token_losses(flat_h, self.head_weight(), flat_t, self.chunk or B * T).view(B, T)
        if reduction != "mean":
            raise ValueError(f"reduction={reduction!r}; valid: mean, none")
        if self.chunk == 0:
            return F.cross_entropy(self.lm.output(h).float().view(B * T, -1), flat_t)
        return chunked_cross_entropy(flat_h, self.head_weight(), flat_t, self.chunk, self.chunk_fn)
