"""The delta rule in chunked (WY / UT-transform) form, in pure PyTorch with autograd: CPU training and prefill.

The sequence is cut into chunks of C tokens. Inside a chunk everything is a few [C, C] / [C, D] matmuls
and one unit-triangular solve; only the state S [K, V] is passed from chunk to chunk, so the Python loop
runs T / C times instead of T. The derivation, and why the per-key (KDA) decay needs sub-chunks to stay
finite, is in README.md beside this file.

Shapes inside: [B, H, NC, C, D] (batch, head, chunk, token in chunk, feature); the public layout is
[B, T, H, D] like fla's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lt2.kernels.common import PaddedSegments
from lt2.kernels.delta_rule.utils import check_inputs, l2norm

# Rows of the per-key decay scores computed exactly per pair: [..., 16, 16, K] at a time.
SUB_CHUNK = 16


def _to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[B, T, H, ...] -> [B, H, NC, C, ...], zero-padding T up to a multiple of C."""
    B, T, H = x.shape[:3]
    pad = -T % chunk_size
    if pad:
        x = F.pad(x, (0, 0) * (x.ndim - 2) + (0, pad))
    x = x.reshape(B, (T + pad) // chunk_size, chunk_size, H, *x.shape[3:])
    return x.movedim(3, 1)


def _vector_decayed_scores(a: torch.Tensor, b: torch.Tensor, G: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-key decay: sum_d a_id b_jd exp(G_id - G_jd), without ever forming exp(+|G|).

    Rows are taken SUB_CHUNK at a time. Within the diagonal block the pairwise exponents are formed
    exactly ([.., s, s, D], masked before exp). For an earlier column j the exponent is split at
    `ref` = G at the last token before the row block: (G_i - G_ref) + (G_ref - G_j), both <= 0.
    """
    C = a.shape[-2]
    rows = []
    for start in range(0, C, SUB_CHUNK):
        end = min(start + SUB_CHUNK, C)
        a_r, b_r, G_r = a[..., start:end, :], b[..., start:end, :], G[..., start:end, :]
        diff = G_r[..., :, None, :] - G_r[..., None, :, :]  # [.., s, s, D]: G_i - G_j, positive above the diagonal
        decay = diff.masked_fill(~mask[start:end, start:end, None], float("-inf")).exp()
        blocks = [torch.einsum("...id,...jd,...ijd->...ij", a_r, b_r, decay)]
        if start:
            ref = G[..., start - 1 : start, :]  # [.., 1, D]
            left = a_r * (G_r - ref).exp()
            right = b[..., :start, :] * (ref - G[..., :start, :]).exp()
            blocks.insert(0, left @ right.transpose(-1, -2))  # [.., s, start]
        if end < C:
            blocks.append(a_r.new_zeros(*a_r.shape[:-1], C - end))
        rows.append(torch.cat(blocks, dim=-1))
    return torch.cat(rows, dim=-2)


def _decayed_scores(a: torch.Tensor, b: torch.Tensor, G: torch.Tensor | None, diagonal: bool) -> torch.Tensor:
    """[.., C, C]: sum_d a_id b_jd exp(G_id - G_jd) for j < i (j <= i when `diagonal`), zero elsewhere.

    a, b [.., C, D]; G None (no decay), [.., C, 1] (scalar) or [.., C, D] (per key): within-chunk
    cumulative log decay, non-increasing along C.
    """
    C = a.shape[-2]
    mask = torch.ones(C, C, dtype=torch.bool, device=a.device).tril(0 if diagonal else -1)
    if G is not None and G.shape[-1] > 1:
        return _vector_decayed_scores(a, b, G, mask)
    scores = a @ b.transpose(-1, -2)
    if G is None:
        return scores.masked_fill(~mask, 0.0)
    diff = G - G.transpose(-1, -2)  # [.., C, C]: G_i - G_j; masked before exp, where it is positive
    return scores * diff.masked_fill(~mask, float("-inf")).exp()


def _chunk_dense(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (already scaled), k [B, T, H, K]; v [B, T, H, V] -> o [B, T, H, V] (compute dtype), state [B, H, K, V]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v, beta = (_to_chunks(x, chunk_size) for x in (q, k, v, beta))  # [B, H, NC, C, .], beta [B, H, NC, C]
    G = None
    if g is not None:
        G = _to_chunks(g.to(q.dtype), chunk_size)
        G = (G[..., None] if g.ndim == 3 else G).cumsum(-2)  # [B, H, NC, C, 1 or K], within-chunk cumulative

    # UT transform: (I + strict_lower(beta_i sum_d k_id k_jd e^{G_id - G_jd})) [U0 | W] = beta [V | K e^G]
    # gives the chunk's delta-rule errors as U = U0 - W S for any incoming state S.
    beta = beta[..., None]
    k_decayed = k if G is None else k * G.exp()
    lower = _decayed_scores(k * beta, k, G, diagonal=False) + torch.eye(chunk_size, dtype=q.dtype, device=q.device)
    rhs = torch.cat([v * beta, k_decayed * beta], dim=-1)  # [.., C, V + K]
    u0, w = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True).split([V, K], dim=-1)

    scores = _decayed_scores(q, k, G, diagonal=True)  # [.., C, C] causal, decayed q.k
    q_decayed = q if G is None else q * G.exp()  # reads the incoming state through the decay so far
    if G is None:
        k_to_end, state_decay = k, None
    else:
        G_end = G[..., -1:, :]  # [.., 1, 1 or K]
        k_to_end = k * (G_end - G).exp()  # each token's write, decayed to the chunk's end
        state_decay = G_end.exp().transpose(-1, -2)  # [.., 1 or K, 1]: the state's decay across the chunk

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    outputs = []
    for n in range(q.shape[2]):
        u = u0[:, :, n] - w[:, :, n] @ S  # [B, H, C, V]
        outputs.append(q_decayed[:, :, n] @ S + scores[:, :, n] @ u)
        if state_decay is not None:
            S = S * state_decay[:, :, n]
        S = S + k_to_end[:, :, n].transpose(-1, -2) @ u
    o = torch.stack(outputs, dim=2)  # [B, H, NC, C, V]
    return o.movedim(1, 3).reshape(B, -1, H, V)[:, :T], S


def chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked delta rule, equal to `naive_recurrent_delta_rule` up to rounding; differentiable in every input.

    Args:
        q, k: [B, T, H, K] queries and keys (L2-normalised here when `use_qk_l2norm`).
        v: [B, T, H, V] values.
        beta: [B, T, H] write strengths (after the sigmoid).
        g: None (DeltaNet), [B, T, H] (GDN) or [B, T, H, K] (KDA): log decay, <= 0.
        scale: query scale, default K ** -0.5.
        initial_state: [N, H, K, V] (N = B, or the number of segments with cu_seqlens).
        cu_seqlens: [N+1] boundaries of packed segments over T (B must be 1); each segment runs alone.
        chunk_size: tokens per chunk.
    Returns:
        o [B, T, H, V] in v's dtype and, when `output_final_state`, the final state [N, H, K, V] in fp32
        (fp64 for fp64 inputs); else None.

    >>> B, T, H, K, V = 1, 100, 2, 8, 16
    >>> q, k, v = torch.randn(B, T, H, K), torch.randn(B, T, H, K), torch.randn(B, T, H, V)
    >>> o, S = chunk_delta_rule(q, k, v, torch.rand(B, T, H), g=-torch.rand(B, T, H, K), use_qk_l2norm=True,
    ...                         cu_seqlens=torch.tensor([0, 30, 100]), output_final_state=True)
    >>> o.shape, S.shape
    (torch.Size([1, 100, 2, 16]), torch.Size([2, 2, 8, 16]))
    """
    check_inputs(q, k, v, beta, g, initial_state, cu_seqlens)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype, dtype = v.dtype, torch.promote_types(v.dtype, torch.float32)
    q, k, v, beta = q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype)
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    q = q * (q.shape[-1] ** -0.5 if scale is None else scale)
    if cu_seqlens is None:
        o, S = _chunk_dense(q, k, v, beta, g, initial_state, chunk_size)
    else:  # packed segments: chunk them as a zero-padded batch
        segments = PaddedSegments.from_cu_seqlens(cu_seqlens, q.shape[1], q.device)
        padded = [segments.pad(x) if x is not None else None for x in (q, k, v, beta, g)]
        o, S = _chunk_dense(*padded, initial_state, chunk_size)
        o = segments.unpad(o)
    return o.to(out_dtype), (S if output_final_state else None)
