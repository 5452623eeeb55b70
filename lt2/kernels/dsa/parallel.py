"""Sparse attention over per-query selected keys in Triton: training and prefill (with backward) and decode.

One program handles one query token and one key/value head: it loads the G query heads of that head's
group as a [BG, BD] tile (G padded to 16 for tl.dot) and walks the token's S selected keys in blocks of
BS, gathering their rows from K and V. The selection is per token, shared by all heads, so the gathered
key block is reused by the whole group. Decode is the same kernel with Tq = 1 over the static cache
(indices are absolute cache slots), so it needs no host sync and can be captured in a CUDA graph.

Backward: dq is accumulated in the program; dk and dv are scattered with fp32 atomics into buffers of
K/V's size, since many queries select the same key. Atomics make dk/dv bitwise non-deterministic
(fp32 summation order) and cost contention on popular keys; memory stays O(B * T * S) for the indices.

With TRITON_INTERPRET=1 set before triton is imported, the same kernels run on CPU tensors through
Triton's interpreter with one pinned config (autotuning needs a GPU), so CI checks them without a device.

Shapes: B batch, Tq queries, Tk keys, HQ query heads, H key/value heads, G = HQ // H, D head dim,
S selected keys per query.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction


@triton.jit
def sparse_attn_fwd_kernel(
    q,
    k,
    v,
    indices,
    o,
    lse,
    scale,
    stride_kb,
    stride_vb,
    Tq,
    S,
    H: tl.constexpr,
    HQ: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    S_PAD: tl.constexpr,
    BG: tl.constexpr,
    BD: tl.constexpr,
    BS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    scale = tl.cast(scale, tl.float32)  # a caller may pass a Python float as fp64 (Inductor does)
    i_t, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    bos_q = i_b * Tq + i_t  # this query's row in the flattened [B * Tq] token axis

    o_g = tl.arange(0, BG)
    o_d = tl.arange(0, BD)
    m_g = o_g < G
    m_d = o_d < D
    # [BG, BD] the group's query heads
    p_q = q + (bos_q * HQ + i_h * G + o_g[:, None]) * D + o_d[None, :]
    b_q = tl.load(p_q, mask=m_g[:, None] & m_d[None, :], other=0.0)

    b_m = tl.full([BG], float("-inf"), dtype=tl.float32)
    b_acc = tl.zeros([BG], dtype=tl.float32)
    b_o = tl.zeros([BG, BD], dtype=tl.float32)
    for i_s in range(0, S_PAD, BS):
        o_s = i_s + tl.arange(0, BS)
        b_idx = tl.load(indices + bos_q * S + o_s, mask=o_s < S, other=-1).to(tl.int64)
        m_s = b_idx >= 0
        o_kv = (b_idx * H + i_h) * D
        # [BD, BS] gathered keys (transposed), [BS, BD] gathered values
        p_k = k + i_b * stride_kb + o_kv[None, :] + o_d[:, None]
        p_v = v + i_b * stride_vb + o_kv[:, None] + o_d[None, :]
        b_k = tl.load(p_k, mask=m_d[:, None] & m_s[None, :], other=0.0)
        b_v = tl.load(p_v, mask=m_s[:, None] & m_d[None, :], other=0.0)
        # [BG, BS]
        b_s = tl.dot(b_q, b_k, input_precision=DOT_PRECISION) * scale
        b_s = tl.where(m_s[None, :], b_s, float("-inf"))
        b_m_new = tl.maximum(b_m, tl.max(b_s, 1))
        # a block of unused slots keeps the max at -inf; exponentiate against 0 then (exp(-inf) = 0, no NaN)
        b_m_safe = tl.where(b_m_new == float("-inf"), 0.0, b_m_new)
        b_r = tl.exp(b_m - b_m_safe)
        b_p = tl.exp(b_s - b_m_safe[:, None])
        b_acc = b_acc * b_r + tl.sum(b_p, 1)
        b_o = b_o * b_r[:, None] + tl.dot(b_p.to(b_v.dtype), b_v, input_precision=DOT_PRECISION)
        b_m = b_m_new
    b_acc_safe = tl.where(b_acc > 0, b_acc, 1.0)
    b_o = b_o / b_acc_safe[:, None]
    b_lse = b_m + tl.log(b_acc_safe)

    p_o = o + (bos_q * HQ + i_h * G + o_g[:, None]) * D + o_d[None, :]
    tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_g[:, None] & m_d[None, :])
    tl.store(lse + bos_q * HQ + i_h * G + o_g, b_lse, mask=m_g)


@triton.jit
def sparse_attn_bwd_kernel(
    q,
    k,
    v,
    indices,
    do,
    lse,
    delta,
    dq,
    dk,
    dv,
    scale,
    Tq,
    Tk,
    S,
    H: tl.constexpr,
    HQ: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    S_PAD: tl.constexpr,
    BG: tl.constexpr,
    BD: tl.constexpr,
    BS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    scale = tl.cast(scale, tl.float32)  # a caller may pass a Python float as fp64 (Inductor does)
    i_t, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    bos_q = i_b * Tq + i_t

    o_g = tl.arange(0, BG)
    o_d = tl.arange(0, BD)
    m_g = o_g < G
    m_d = o_d < D
    m_qd = m_g[:, None] & m_d[None, :]
    o_qd = (bos_q * HQ + i_h * G + o_g[:, None]) * D + o_d[None, :]
    # [BG, BD]
    b_q = tl.load(q + o_qd, mask=m_qd, other=0.0)
    b_do = tl.load(do + o_qd, mask=m_qd, other=0.0)
    # [BG]
    b_lse = tl.load(lse + bos_q * HQ + i_h * G + o_g, mask=m_g, other=0.0)
    b_delta = tl.load(delta + bos_q * HQ + i_h * G + o_g, mask=m_g, other=0.0)

    b_dq = tl.zeros([BG, BD], dtype=tl.float32)
    for i_s in range(0, S_PAD, BS):
        o_s = i_s + tl.arange(0, BS)
        b_idx = tl.load(indices + bos_q * S + o_s, mask=o_s < S, other=-1).to(tl.int64)
        m_s = b_idx >= 0
        m_kd = m_s[:, None] & m_d[None, :]
        o_kv = ((i_b * Tk + b_idx) * H + i_h) * D
        # [BS, BD]
        b_k = tl.load(k + o_kv[:, None] + o_d[None, :], mask=m_kd, other=0.0)
        b_v = tl.load(v + o_kv[:, None] + o_d[None, :], mask=m_kd, other=0.0)
        # [BG, BS] probabilities recomputed from the saved log-sum-exp
        b_s = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PRECISION) * scale
        b_p = tl.where(m_g[:, None] & m_s[None, :], tl.exp(b_s - b_lse[:, None]), 0.0)
        b_dp = tl.dot(b_do, tl.trans(b_v), input_precision=DOT_PRECISION)
        b_ds = b_p * (b_dp - b_delta[:, None])
        b_dq += tl.dot(b_ds.to(b_k.dtype), b_k, input_precision=DOT_PRECISION)
        # [BS, BD] contributions of this query to its selected keys
        b_dk = tl.dot(tl.trans(b_ds).to(b_q.dtype), b_q, input_precision=DOT_PRECISION) * scale
        b_dv = tl.dot(tl.trans(b_p).to(b_do.dtype), b_do, input_precision=DOT_PRECISION)
        tl.atomic_add(dk + o_kv[:, None] + o_d[None, :], b_dk, mask=m_kd)
        tl.atomic_add(dv + o_kv[:, None] + o_d[None, :], b_dv, mask=m_kd)
    tl.store(dq + o_qd, (b_dq * scale).to(dq.dtype.element_ty), mask=m_qd)


@triton.jit
def selected_probs_kernel(
    q,
    k,
    indices,
    lse,
    p,
    scale,
    stride_kb,
    Tq,
    S,
    H: tl.constexpr,
    HQ: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    BG: tl.constexpr,
    BD: tl.constexpr,
    BS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    scale = tl.cast(scale, tl.float32)  # a caller may pass a Python float as fp64 (Inductor does)
    # p[b, t, s] = mean over all HQ heads of exp(score - lse): one program per (query, block of BS slots)
    i_t, i_sb, i_b = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    bos_q = i_b * Tq + i_t
    o_g = tl.arange(0, BG)
    o_d = tl.arange(0, BD)
    o_s = i_sb * BS + tl.arange(0, BS)
    m_g = o_g < G
    m_d = o_d < D
    b_idx = tl.load(indices + bos_q * S + o_s, mask=o_s < S, other=-1).to(tl.int64)
    m_s = b_idx >= 0
    b_sum = tl.zeros([BS], dtype=tl.float32)
    for i_h in range(H):
        b_q = tl.load(
            q + (bos_q * HQ + i_h * G + o_g[:, None]) * D + o_d[None, :], mask=m_g[:, None] & m_d[None, :], other=0.0
        )
        b_lse = tl.load(lse + bos_q * HQ + i_h * G + o_g, mask=m_g, other=0.0)
        p_k = k + i_b * stride_kb + ((b_idx * H + i_h) * D)[None, :] + o_d[:, None]
        b_k = tl.load(p_k, mask=m_d[:, None] & m_s[None, :], other=0.0)
        b_s = tl.dot(b_q, b_k, input_precision=DOT_PRECISION) * scale
        b_p = tl.where(m_g[:, None] & m_s[None, :], tl.exp(b_s - b_lse[:, None]), 0.0)
        b_sum += tl.sum(b_p, 0)
    tl.store(p + bos_q * S + o_s, b_sum / HQ, mask=o_s < S)


def _launch(kernel, grid, x: torch.Tensor, **kwargs) -> None:
    """Run `kernel` on CUDA, or for CPU tensors through Triton's interpreter (tiny fp32 CI checks)."""
    if x.is_cuda:
        kernel[grid](**kwargs, num_warps=4, num_stages=2)
        return
    if not isinstance(kernel, InterpretedFunction):
        raise RuntimeError(
            "the DSA Triton kernels got CPU tensors but Triton's interpreter is off: set TRITON_INTERPRET=1 "
            "before triton is first imported, or use the naive_* references on CPU"
        )
    kernel[grid](**kwargs)  # the interpreter ignores launch options: one pinned config, no autotuning


def _padded(S: int, BS: int) -> int:
    # The key loop runs to a power-of-two bound past S (masked): at most ~log2(topk) compiled variants
    # whatever S = min(topk, Tk) a call has, and a constant loop bound, which the interpreter needs (it
    # cannot take a runtime int as a range bound under numpy >= 2.4).
    return max(BS, triton.next_power_of_2(S))


def _meta(q: torch.Tensor, k: torch.Tensor) -> dict:
    HQ, H, D = q.shape[2], k.shape[2], q.shape[3]
    return dict(
        H=H,
        HQ=HQ,
        G=HQ // H,
        D=D,
        BG=max(16, triton.next_power_of_2(HQ // H)),  # tl.dot needs tiles of at least 16 rows
        BD=max(16, triton.next_power_of_2(D)),
        # 64 selected keys per step on GPU; the interpreter runs block ops in numpy, where small blocks are quicker
        BS=64 if q.is_cuda else 16,
        # fp32 inputs get exact products instead of tf32; half inputs ignore the flag
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )


def _inner_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride()[1:] == (x.shape[2] * x.shape[3], x.shape[3], 1) else x.contiguous()


def sparse_attention_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    B, Tq, HQ, _ = q.shape
    o = torch.empty_like(q)
    lse = torch.empty(B, Tq, HQ, dtype=torch.float32, device=q.device)
    meta = _meta(q, k)
    _launch(
        sparse_attn_fwd_kernel,
        (Tq, B * meta["H"]),
        q,
        q=q,
        k=k,
        v=v,
        indices=indices,
        o=o,
        lse=lse,
        scale=scale,
        stride_kb=k.stride(0),
        stride_vb=v.stride(0),
        Tq=Tq,
        S=indices.shape[-1],
        S_PAD=_padded(indices.shape[-1], meta["BS"]),
        **meta,
    )
    return o, lse


def sparse_attention_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    do: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, Tq = q.shape[:2]
    k, v = k.contiguous(), v.contiguous()  # dk/dv are addressed with k's offsets
    delta = (o.float() * do.float()).sum(-1)  # [B, Tq, HQ]: rowsum(dO * O) = sum_s P * dP
    dq = torch.empty_like(q)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    meta = _meta(q, k)
    _launch(
        sparse_attn_bwd_kernel,
        (Tq, B * meta["H"]),
        q,
        q=q,
        k=k,
        v=v,
        indices=indices,
        do=do,
        lse=lse,
        delta=delta,
        dq=dq,
        dk=dk,
        dv=dv,
        scale=scale,
        Tq=Tq,
        Tk=k.shape[1],
        S=indices.shape[-1],
        S_PAD=_padded(indices.shape[-1], meta["BS"]),
        **meta,
    )
    return dq, dk.to(k.dtype), dv.to(v.dtype)


class SparseAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, indices, scale):
        o, lse = sparse_attention_fwd(q, k, v, indices, scale)
        ctx.save_for_backward(q, k, v, indices, o, lse)
        ctx.scale = scale
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, dlse):
        q, k, v, indices, o, lse = ctx.saved_tensors
        dq, dk, dv = sparse_attention_bwd(q, k, v, indices, o, lse, do.contiguous(), ctx.scale)
        return dq, dk, dv, None, None


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor) -> None:
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape:
        raise ValueError(f"expected q [B, Tq, HQ, D] and k, v [B, Tk, H, D], got {tuple(q.shape)}, {tuple(k.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3] or q.shape[2] % k.shape[2]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch or head dim, or HQ % H != 0")
    if indices.shape[:2] != q.shape[:2] or indices.dtype != torch.int32:
        raise ValueError(
            f"indices must be int32 [B, Tq, S] for q {tuple(q.shape)}, got {indices.dtype} {tuple(indices.shape)}"
        )


def parallel_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    scale: float | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of each query over its selected keys (Triton; differentiable in q, k, v).

    q [B, Tq, HQ, D], k/v [B, Tk, H, D] (a prefix view of a cache is fine: only [Tk, H, D] must be
    contiguous), indices [B, Tq, S] int32 key positions shared by the heads of a query, -1 for unused
    slots (each query needs one valid index). Returns o [B, Tq, HQ, D] in q's dtype and, with return_lse,
    the fp32 log-sum-exp [B, Tq, HQ] that `parallel_selected_probs` needs. Equals `naive_sparse_attention`.

    >>> q, kv = torch.randn(1, 2, 4, 16), torch.randn(1, 5, 2, 16)
    >>> parallel_sparse_attention(q, kv, kv, torch.tensor([[[0, -1], [1, 0]]], dtype=torch.int32)).shape
    torch.Size([1, 2, 4, 16])
    """
    _check(q, k, v, indices)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v = q.contiguous(), _inner_contiguous(k), _inner_contiguous(v)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        o, lse = SparseAttentionFunction.apply(q, k, v, indices.contiguous(), scale)
    else:  # decode and evaluation: one opaque op, so torch.compile does not trace the launch code
        o, lse = sparse_attention_op(q, k, v, indices.contiguous(), scale)
    return (o, lse) if return_lse else o


@torch.library.custom_op("lt2::dsa_sparse_attention", mutates_args=())
def sparse_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """sparse_attention_fwd as a registered op (no backward): o [B, Tq, HQ, D] like q, lse [B, Tq, HQ] fp32."""
    return sparse_attention_fwd(q, k, v, indices, scale)


@sparse_attention_op.register_fake
def _sparse_attention_fake(q, k, v, indices, scale):
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=torch.float32)


def parallel_selected_probs(
    q: torch.Tensor, k: torch.Tensor, indices: torch.Tensor, lse: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Attention distribution over the selected keys averaged over the HQ heads, [B, Tq, S] fp32 (no autograd).

    lse [B, Tq, HQ] is the forward's log-sum-exp (parallel_sparse_attention(..., return_lse=True)). Equals
    `naive_selected_probs`; the target of the indexer's KL objective.
    """
    _check(q, k, k, indices)
    B, Tq = q.shape[:2]
    S = indices.shape[-1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k = q.contiguous(), _inner_contiguous(k)
    p = torch.empty(B, Tq, S, dtype=torch.float32, device=q.device)
    meta = _meta(q, k)
    with torch.no_grad():
        _launch(
            selected_probs_kernel,
            (Tq, triton.cdiv(S, meta["BS"]), B),
            q,
            q=q,
            k=k,
            indices=indices.contiguous(),
            lse=lse.contiguous(),
            p=p,
            scale=scale,
            stride_kb=k.stride(0),
            Tq=Tq,
            S=S,
            **meta,
        )
    return p
