"""Chunked gated linear attention in PyTorch, with autograd: CPU training and prefill.

The sequence is cut into chunks of C tokens (64, as fla). Inside a chunk the recurrence is a decay-masked
attention matrix; across chunks only the state [K, V] is carried, so the cost is linear in T. The math,
and why per-key-channel gates need sub-chunks to stay finite, is in README.md beside this file.

Legend: B batch, T tokens, H heads, K key dim, V value dim, NT chunks, L chunk length, n sub-chunks per
chunk, S sub-chunk length, N sequences. Inside this file tensors are [B, H, NT, L, ...] (heads before
time, so that chunk matmuls batch over the leading dims); inputs and outputs are [B, T, H, ...].
"""

from __future__ import annotations

import torch

from lt2.kernels.common import PaddedSegments, compute_dtype
from lt2.kernels.gla.utils import check_inputs, expand_gate

CHUNK_SIZE = 64  # tokens per chunk, as fla's kernels
SUB_CHUNK_SIZE = 16  # tokens per sub-chunk for per-key-channel gates (fla's BC)


def _lower_triangle(n: int, device, strict: bool = False) -> torch.Tensor:
    """[n, n] bool, True where column <= row (< row when strict)."""
    index = torch.arange(n, device=device)
    return index[None, :] < index[:, None] if strict else index[None, :] <= index[:, None]


def _intra_scalar(q: torch.Tensor, k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Decay-masked scores of one chunk with a per-head gate.

    q, k [..., L, K]; b [..., L] cumulative log decay inside the chunk -> A [..., L, L] with
    A_ij = q_i . k_j * exp(b_i - b_j) for j <= i, else 0.
    """
    causal = _lower_triangle(q.shape[-2], q.device)
    # Mask before exp: b_i - b_j > 0 above the diagonal could overflow, and inf * 0 is NaN (also in backward).
    decay = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf")))
    return (q @ k.transpose(-1, -2)) * decay


def _intra_vector(q: torch.Tensor, k: torch.Tensor, b: torch.Tensor, sub: int) -> torch.Tensor:
    """Decay-masked scores of one chunk with a per-key-channel gate, computed without overflow.

    q, k, b [..., L, K] (b: cumulative log decay inside the chunk) -> A [..., L, L] with
    A_ij = sum_d q_id k_jd exp(b_id - b_jd) for j <= i, else 0.

    exp(b_i - b_j) does not factor into exp(b_i) * exp(-b_j) safely (exp(-b_j) overflows once a chunk has
    decayed by more than ~88 nats in fp32). Blocks of sub-chunks I > J factor around r_I, the cumulative
    decay just before sub-chunk I: q_i exp(b_i - r_I) and k_j exp(r_I - b_j) both have exponents <= 0.
    Diagonal blocks (I == J) take the exact [S, S, K] form.
    """
    *lead, L, K = q.shape
    n = L // sub
    qs, ks, bs = (x.reshape(*lead, n, sub, K) for x in (q, k, b))  # [..., n, S, K]
    # r_I: b at the last position of sub-chunk I-1 (0 for I = 0, whose row of blocks is empty anyway).
    r = torch.cat([torch.zeros_like(bs[..., :1, 0, :]), bs[..., :-1, -1, :]], dim=-2)  # [..., n, K]
    q_hat = qs * torch.exp(bs - r[..., :, None, :])  # [..., n(I), S, K]
    below = _lower_triangle(n, q.device, strict=True)  # [I, J]: J < I
    exponent = r[..., :, None, None, :] - bs[..., None, :, :, :]  # [..., n(I), n(J), S, K]
    k_hat = ks[..., None, :, :, :] * torch.exp(exponent.masked_fill(~below[:, :, None, None], float("-inf")))
    blocks = torch.einsum("...isk,...ijtk->...ijst", q_hat, k_hat)  # [..., n(I), n(J), S, S]
    causal = _lower_triangle(sub, q.device)
    diff = bs[..., :, None, :] - bs[..., None, :, :]  # [..., n, S(i), S(j), K]
    decay = torch.exp(diff.masked_fill(~causal[:, :, None], float("-inf")))
    diagonal = torch.einsum("...isk,...itk,...istk->...ist", qs, ks, decay)  # [..., n, S, S]
    eye = torch.eye(n, dtype=q.dtype, device=q.device)[:, :, None, None]  # [I, J, 1, 1]
    blocks = blocks + eye * diagonal[..., :, None, :, :]
    return blocks.transpose(-3, -2).reshape(*lead, L, L)  # [..., I, S, J, S] -> [..., L, L]


def _chunk_equal_lengths(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float,
    initial_state: torch.Tensor | None,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [B, T, H, K], v [B, T, H, V], g [B, T, H(, K)] -> o [B, T, H, V], final state [B, H, K, V]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    dtype = compute_dtype(q)
    L = chunk_size
    pad = -T % L
    NT = (T + pad) // L

    def to_chunks(x: torch.Tensor) -> torch.Tensor:  # [B, T, H, ...] -> [B, H, NT, L, ...]
        x = x.to(dtype)
        if pad:  # zero q/k/v and zero log decay: padded tokens write nothing and keep the state
            x = torch.cat([x, x.new_zeros(B, pad, *x.shape[2:])], dim=1)
        return x.reshape(B, NT, L, *x.shape[2:]).movedim(3, 1)

    q, k, v, g = to_chunks(q) * scale, to_chunks(k), to_chunks(v), to_chunks(g)
    vector = g.ndim == 5
    b = g.cumsum(dim=3)  # [B, H, NT, L(, K)] cumulative log decay since the chunk start
    if vector:
        scores = _intra_vector(q, k, b, min(SUB_CHUNK_SIZE, L))
    else:
        scores = _intra_scalar(q, k, b)
        b = b[..., None]  # [B, H, NT, L, 1]: broadcasts over K below
    o = scores @ v  # [B, H, NT, L, V] intra-chunk part
    b_last = b[..., -1:, :]  # [B, H, NT, 1, K|1] decay of the whole chunk
    # Each chunk's own contribution to the state at its end, and the decay it applies to the state entering.
    written = (k * torch.exp(b_last - b)).transpose(-1, -2) @ v  # [B, H, NT, K, V]
    chunk_decay = torch.exp(b_last).transpose(-1, -2)  # [B, H, NT, K|1, 1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
    entering = []
    for c in range(NT):  # the only sequential part: NT = T / 64 small state updates
        entering.append(S)
        S = chunk_decay[:, :, c] * S + written[:, :, c]
    o = o + (q * torch.exp(b)) @ torch.stack(entering, dim=2)  # inter-chunk part
    return o.movedim(1, 3).reshape(B, NT * L, H, V)[:, :T], S


def chunk_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked gated linear attention (same results as `naive_recurrent_gla`, linear cost, autograd).

    Args:
        q, k: [B, T, H, K] queries and keys.
        v: [B, T, H, V] values.
        g: log decay (<= 0): [B, T, H] per head, [B, T, H, K] per key channel, or [H] constant per head.
        scale: query scale, default K ** -0.5.
        initial_state: [N, H, K, V] state before the first token of each sequence (zeros when None).
        output_final_state: also return the state after the last token.
        cu_seqlens: [N+1] boundaries of packed segments when B == 1; each segment starts from its own
            initial state (or zeros) and nothing crosses a boundary.
        chunk_size: tokens per chunk; results do not depend on it beyond rounding.
    Returns:
        o [B, T, H, V] in q's dtype, and the final state [N, H, K, V] (fp32, or fp64 for fp64 inputs) or None.

    >>> q, k, v = torch.randn(1, 100, 2, 8), torch.randn(1, 100, 2, 8), torch.randn(1, 100, 2, 16)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(1, 100, 2, 8))
    >>> o, S = chunk_gla(q, k, v, g, output_final_state=True, cu_seqlens=torch.tensor([0, 37, 100]))
    >>> o.shape, S.shape
    (torch.Size([1, 100, 2, 16]), torch.Size([2, 2, 8, 16]))
    """
    check_inputs(q, k, v, g, initial_state, cu_seqlens)
    if chunk_size < 1 or (g.ndim == 4 and chunk_size % min(SUB_CHUNK_SIZE, chunk_size)):
        raise ValueError(
            f"chunk_size must be >= 1 and, for per-key-channel gates, a multiple of {SUB_CHUNK_SIZE} "
            f"(or smaller than it); got {chunk_size}"
        )
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    g = expand_gate(g, q)
    if cu_seqlens is None:
        o, S = _chunk_equal_lengths(q, k, v, g, scale, initial_state, chunk_size)
    else:  # packed segments: chunk them as a zero-padded batch
        segments = PaddedSegments.from_cu_seqlens(cu_seqlens, q.shape[1], q.device)
        q, k, v, g = (segments.pad(x) for x in (q, k, v, g))
        o, S = _chunk_equal_lengths(q, k, v, g, scale, initial_state, chunk_size)
        o = segments.unpad(o)
    return o.to(q.dtype), (S if output_final_state else None)
