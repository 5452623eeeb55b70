"""Split-KV ("flash-decoding") attention for one new query token per sequence over a static KV cache.

Grid (n_splits, B * Hkv). A program takes one KV head of one sequence and one contiguous chunk of its
cache entries, and handles all G = H / Hkv query heads of that head's group, so every key and value row
is read from memory once per group. It streams its chunk in blocks of BS entries with an online softmax
and writes a partial (running max m, sum l, unnormalised accumulator acc) to fp32 scratch; a second,
tiny kernel merges the n_splits partials of each (sequence, query head). The math is in README.md.

Graph capture: the number of written slots is a device tensor `length` [1] that both kernels read, so a
captured decode step replays unchanged while the cache fills. The chunk size is derived from it on the
device, cdiv(cdiv(n_keys, n_splits), BS) * BS with n_keys = min(length, S_max) (full cache) or W
(ring), so all n_splits programs share the real work at any length; programs whose chunk starts past
n_keys return at once and the merge skips them. K/V loads are masked by visibility (left padding, empty
ring entries, slots outside the window), and a masked load moves no bytes: traffic is that of the keys
the query actually sees.

The key loop is a `while` over a device-side bound: Triton compiles it to a dynamic loop, and Triton's
interpreter cannot take a runtime value as a `range` bound (numpy >= 2.4), but can run a `while`.

Under TRITON_INTERPRET=1 (set before triton is imported) the kernels run on CPU tensors with one pinned
configuration, so CI checks them in fp32 without a GPU.

Shapes: B batch, H query heads, Hkv key/value heads, G = H / Hkv, D head dim, S cache entries (S_max
slots of a full cache, or the W entries of a window ring), NS splits.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

# Programs per SM to aim for when choosing n_splits: several resident programs per SM keep enough
# loads in flight to cover DRAM latency without software pipelining (the key loop is dynamic).
PROGRAMS_PER_SM = 4
# The merge kernel loads all partials of a head as one [MAX_SPLITS, D] tile.
MAX_SPLITS = 64
# The interpreter has no SM count; pretend to be an H100 so CPU runs take the same default path.
INTERPRETER_SMS = 132


@triton.jit
def _split_chunk(length, n_slots, NS: tl.constexpr, BS: tl.constexpr, IS_RING: tl.constexpr):
    """(query slot, entries to scan, entries per split): the same integers in both kernels."""
    b_len = tl.load(length).to(tl.int32)
    if IS_RING:
        n_keys = n_slots  # every ring entry may hold a visible slot
    else:
        n_keys = tl.maximum(tl.minimum(b_len, n_slots), 0)  # clamped: a bad length cannot read past the buffer
    # a multiple of BS and never 0, so that the merge's cdiv(n_keys, chunk) is defined for n_keys = 0
    chunk = tl.maximum(tl.cdiv(tl.cdiv(n_keys, NS), BS) * BS, BS)
    return b_len - 1, n_keys, chunk


@triton.jit
def decode_attn_split_kernel(
    q,
    k,
    v,
    length,
    key_mask,
    slot_of,
    m_part,
    l_part,
    acc_part,
    scale,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_mb,
    n_slots,
    n_mask,
    window,
    H: tl.constexpr,
    HKV: tl.constexpr,
    G: tl.constexpr,
    D: tl.constexpr,
    NS: tl.constexpr,
    BG: tl.constexpr,
    BS: tl.constexpr,
    BD: tl.constexpr,
    IS_RING: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    i_s, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // HKV, i_bh % HKV
    i_t, n_keys, chunk = _split_chunk(length, n_slots, NS, BS, IS_RING)
    start = i_s * chunk
    if start >= n_keys:
        return  # past the written slots: no work, no partial (the merge masks this split out)
    end = tl.minimum(start + chunk, n_keys)

    o_g = tl.arange(0, BG)
    o_d = tl.arange(0, BD)
    mask_g = o_g < G
    mask_d = o_d < D
    # [BG, BD] the group's query heads, pre-scaled by D^-0.5 * log2(e): the softmax runs in base 2
    p_q = q + (i_b * H + i_h * G + o_g[:, None]) * D + o_d[None, :]
    b_q = tl.load(p_q, mask=mask_g[:, None] & mask_d[None, :], other=0.0).to(tl.float32) * tl.cast(scale, tl.float32)

    b_m = tl.full([BG], float("-inf"), dtype=tl.float32)
    b_l = tl.zeros([BG], dtype=tl.float32)
    b_acc = tl.zeros([BG, BD], dtype=tl.float32)
    i_j = start
    while i_j < end:
        o_j = i_j + tl.arange(0, BS)
        mask_j = o_j < end
        if IS_RING:
            b_slot = tl.load(slot_of + o_j, mask=mask_j, other=-1)
            b_dist = i_t - b_slot
            mask_j = mask_j & (b_slot >= 0) & (b_slot < n_mask) & (b_dist >= 0) & (b_dist < window)
            p_real = key_mask + i_b * stride_mb + tl.where(mask_j, b_slot, 0)
        else:
            p_real = key_mask + i_b * stride_mb + o_j
        mask_j = mask_j & (tl.load(p_real, mask=mask_j, other=0) != 0)
        # [BS, BD] keys and values of this block; invisible rows are masked and never leave memory
        mask_kv = mask_j[:, None] & mask_d[None, :]
        o_row = o_j.to(tl.int64)[:, None]
        b_k = tl.load(k + i_b * stride_kb + o_row * stride_ks + i_h * stride_kh + o_d[None, :], mask=mask_kv, other=0.0)
        b_v = tl.load(v + i_b * stride_vb + o_row * stride_vs + i_h * stride_vh + o_d[None, :], mask=mask_kv, other=0.0)
        if USE_DOT:  # G > 1: tensor cores on the group (rows padded to 16 for tl.dot)
            b_s = tl.dot(b_q.to(b_k.dtype), tl.trans(b_k), input_precision=DOT_PRECISION)
        else:  # G == 1: a [1, BD] x [BD, BS] product is a broadcast multiply and a row sum (2-D tiles only)
            b_s = tl.sum(b_q * b_k.to(tl.float32), 1)[None, :]
        b_s = tl.where(mask_j[None, :], b_s, float("-inf"))  # [BG, BS]
        b_m_new = tl.maximum(b_m, tl.max(b_s, 1))
        # nothing visible yet: exponentiate against 0, so exp2(-inf - 0) = 0 instead of NaN
        b_m_safe = tl.where(b_m_new == float("-inf"), 0.0, b_m_new)
        b_alpha = tl.exp2(b_m - b_m_safe)
        b_p = tl.exp2(b_s - b_m_safe[:, None])
        b_l = b_l * b_alpha + tl.sum(b_p, 1)
        if USE_DOT:
            b_pv = tl.dot(b_p.to(b_v.dtype), b_v, input_precision=DOT_PRECISION)
        else:
            b_pv = tl.sum(tl.sum(b_p, 0)[:, None] * b_v.to(tl.float32), 0)[None, :]  # sum(b_p, 0): its one row
        b_acc = b_acc * b_alpha[:, None] + b_pv
        b_m = b_m_new
        i_j += BS

    # partials [B, H, NS] and [B, H, NS, D], fp32
    o_part = (i_b * H + i_h * G + o_g) * NS + i_s
    tl.store(m_part + o_part, b_m, mask=mask_g)
    tl.store(l_part + o_part, b_l, mask=mask_g)
    p_acc = acc_part + o_part.to(tl.int64)[:, None] * D + o_d[None, :]
    tl.store(p_acc, b_acc, mask=mask_g[:, None] & mask_d[None, :])


@triton.jit
def decode_attn_combine_kernel(
    m_part,
    l_part,
    acc_part,
    o,
    length,
    n_slots,
    D: tl.constexpr,
    NS: tl.constexpr,
    BNS: tl.constexpr,
    BS: tl.constexpr,
    BD: tl.constexpr,
    IS_RING: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)  # one (sequence, query head)
    _, n_keys, chunk = _split_chunk(length, n_slots, NS, BS, IS_RING)
    n_active = tl.cdiv(n_keys, chunk)  # splits that ran; the others wrote nothing

    o_s = tl.arange(0, BNS)
    o_d = tl.arange(0, BD)
    mask_s = o_s < n_active
    mask_d = o_d < D
    b_m = tl.load(m_part + i_bh * NS + o_s, mask=mask_s, other=float("-inf"))
    b_l = tl.load(l_part + i_bh * NS + o_s, mask=mask_s, other=0.0)
    p_acc = acc_part + (i_bh * NS + o_s[:, None]) * D + o_d[None, :]
    b_acc = tl.load(p_acc, mask=mask_s[:, None] & mask_d[None, :], other=0.0)  # [BNS, BD]
    b_top = tl.max(b_m, 0)
    b_top = tl.where(b_top == float("-inf"), 0.0, b_top)
    b_w = tl.exp2(b_m - b_top)  # rescales each split to the global max; 0 for splits that saw nothing
    b_total = tl.sum(b_w * b_l, 0)
    b_o = tl.sum(b_w[:, None] * b_acc, 0) / tl.where(b_total > 0, b_total, 1.0)
    tl.store(o + i_bh * D + o_d, b_o.to(o.dtype.element_ty), mask=mask_d)


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def default_num_splits(n_groups: int, n_slots: int, device: torch.device, block_s: int = 64) -> int:
    """Splits per (sequence, KV head): about PROGRAMS_PER_SM programs per SM when the cache is full.

    n_groups = B * Hkv programs per split. Batch 1 with 16 KV heads on an H100 gets 33 splits (528
    programs); batch 8 gets 5. Never more splits than blocks of `block_s` entries, nor than MAX_SPLITS.
    """
    sms = _sm_count(device) if device.type == "cuda" else INTERPRETER_SMS
    want = triton.cdiv(PROGRAMS_PER_SM * sms, n_groups)
    return max(1, min(want, triton.cdiv(n_slots, block_s), MAX_SPLITS))


def _launch(kernel, grid: tuple[int, ...], x: torch.Tensor, num_warps: int, **kwargs) -> None:
    """Run `kernel` on CUDA, or on CPU tensors through Triton's interpreter (tiny fp32 CI checks)."""
    if not x.is_cuda and not isinstance(kernel, InterpretedFunction):
        raise RuntimeError(
            "the decode-attention Triton kernels got CPU tensors but Triton's interpreter is off: set "
            "TRITON_INTERPRET=1 before triton is first imported, or use naive_decode_attention on CPU"
        )
    # the interpreter ignores launch options: whatever is pinned here is the one config it runs
    kernel[grid](**kwargs, num_warps=num_warps, num_stages=1)


def decode_attention_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    length: torch.Tensor,
    key_mask: torch.Tensor,
    window: int | None,
    slot_of: torch.Tensor | None,
    n_splits: int | None = None,
    block_s: int | None = None,
    num_warps: int = 4,
) -> torch.Tensor:
    """Allocate the output and fp32 partials and launch both kernels; arguments already checked.

    `block_s` (cache entries per loop step) and `num_warps` are exposed for the benchmark's sweep.
    """
    B, H, D = q.shape
    S, HKV = k.shape[1], k.shape[2]
    G = H // HKV
    if block_s is None:
        # 64 entries per step on GPU; the interpreter runs each block op in numpy, where small blocks are quicker
        block_s = 64 if q.is_cuda else 16
    NS = n_splits if n_splits is not None else default_num_splits(B * HKV, S, q.device, block_s)
    is_ring = slot_of is not None
    use_dot = G > 1
    m_part = torch.empty(B, H, NS, dtype=torch.float32, device=q.device)
    l_part = torch.empty(B, H, NS, dtype=torch.float32, device=q.device)
    acc_part = torch.empty(B, H, NS, D, dtype=torch.float32, device=q.device)
    o = torch.empty_like(q)
    BD = max(16, triton.next_power_of_2(D))
    mask_u8 = key_mask.view(torch.uint8)  # same bytes; Triton loads bytes more predictably than i1
    _launch(
        decode_attn_split_kernel,
        (NS, B * HKV),
        q,
        num_warps=num_warps,
        q=q,
        k=k,
        v=v,
        length=length,
        key_mask=mask_u8,
        slot_of=slot_of if is_ring else length,  # unused without a ring; any pointer will do
        m_part=m_part,
        l_part=l_part,
        acc_part=acc_part,
        scale=D**-0.5 * math.log2(math.e),
        stride_kb=k.stride(0),
        stride_ks=k.stride(1),
        stride_kh=k.stride(2),
        stride_vb=v.stride(0),
        stride_vs=v.stride(1),
        stride_vh=v.stride(2),
        stride_mb=mask_u8.stride(0),
        n_slots=S,
        n_mask=key_mask.shape[1],
        window=window if is_ring else 0,
        H=H,
        HKV=HKV,
        G=G,
        D=D,
        NS=NS,
        BG=max(16, triton.next_power_of_2(G)) if use_dot else 1,  # tl.dot needs tiles of at least 16 rows
        BS=block_s,
        BD=BD,
        IS_RING=is_ring,
        USE_DOT=use_dot,
        # fp32 caches get exact products instead of tf32; half inputs ignore the flag
        DOT_PRECISION="ieee" if k.dtype == torch.float32 else "tf32",
    )
    _launch(
        decode_attn_combine_kernel,
        (B * H,),
        q,
        num_warps=4,
        m_part=m_part,
        l_part=l_part,
        acc_part=acc_part,
        o=o,
        length=length,
        n_slots=S,
        D=D,
        NS=NS,
        BNS=triton.next_power_of_2(NS),
        BS=block_s,
        BD=BD,
        IS_RING=is_ring,
    )
    return o


FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _check(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    length: torch.Tensor,
    key_mask: torch.Tensor,
    window: int | None,
    slot_of: torch.Tensor | None,
    n_splits: int | None,
) -> None:
    """Raise ValueError, naming the shapes, unless the arguments form one decode-attention problem."""
    if q.ndim != 3:
        raise ValueError(f"q must be [B, H, D], got shape {tuple(q.shape)}")
    B, H, D = q.shape
    if k.ndim != 4 or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k must be [B, S, Hkv, D] = [{B}, S, Hkv, {D}], got shape {tuple(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"v shape {tuple(v.shape)} != k shape {tuple(k.shape)}")
    S, Hkv = k.shape[1], k.shape[2]
    if S < 1 or Hkv < 1 or H % Hkv:
        raise ValueError(f"q heads H={H} must be a multiple of the k/v heads Hkv={Hkv}, and S={S} >= 1")
    if D > 256:
        raise ValueError(f"head dim D={D} > 256 is not supported (one [BG, D] register tile per program)")
    if q.dtype not in FLOATS or k.dtype not in FLOATS or v.dtype != k.dtype:
        raise ValueError(f"q, k, v must be fp16/bf16/fp32 with k and v alike; got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.stride(3) != 1 or v.stride(3) != 1:
        raise ValueError(f"k and v need a contiguous head dim, got strides {k.stride()} and {v.stride()}")
    if length.shape != (1,) or length.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"length must be a [1] int64 (or int32) tensor, got {tuple(length.shape)} {length.dtype}")
    if key_mask.dtype != torch.bool or key_mask.ndim != 2 or key_mask.shape[0] != B:
        raise ValueError(f"key_mask must be [B, L] = [{B}, L] bool, got {tuple(key_mask.shape)} {key_mask.dtype}")
    if (window is None) != (slot_of is None):
        raise ValueError(
            f"window and slot_of go together (a sliding window needs the ring's slot_of); got window={window} "
            f"and slot_of {'None' if slot_of is None else tuple(slot_of.shape)}"
        )
    if slot_of is None and key_mask.shape[1] != S:
        raise ValueError(f"key_mask must be [B, S_max] = [{B}, {S}] for a full cache, got {tuple(key_mask.shape)}")
    if slot_of is not None:
        if slot_of.shape != (S,) or slot_of.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"slot_of must be [W] = [{S}] int64, got {tuple(slot_of.shape)} {slot_of.dtype}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
    if n_splits is not None and not 1 <= n_splits <= MAX_SPLITS:
        raise ValueError(f"n_splits must lie in [1, {MAX_SPLITS}], got {n_splits}")
    devices = {t.device for t in (q, k, v, length, key_mask) + ((slot_of,) if slot_of is not None else ())}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise ValueError("decode_attention has no backward (decode only); call it under torch.no_grad()")


def decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    length: torch.Tensor,
    key_mask: torch.Tensor,
    window: int | None = None,
    slot_of: torch.Tensor | None = None,
    *,
    n_splits: int | None = None,
) -> torch.Tensor:
    """Attention of one new query token per sequence over a static KV cache (split-KV, graph-capturable).

    Args:
        q: [B, H, D] queries of the new token (RoPE applied), H = G * Hkv; fp16, bf16 or fp32.
        k, v: [B, S, Hkv, D] the cache, the new token's key/value already written: S = S_max slots of a
            full cache, or the W entries of a window ring. Head dim contiguous.
        length: [1] int64 device tensor, slots written so far (the new token's included); the query
            sits at slot length - 1. Read on the device only: no host sync, so a captured CUDA graph
            replays at every length. Must lie in [1, S_max] for a full cache (not checked: that would
            sync; a larger value is clamped to S_max).
        key_mask: [B, L] bool, slots that hold real tokens (False: left padding). L = S_max for a full
            cache; for a ring, L is the absolute slot range (max_len) that slot_of indexes.
        window: ring only; key slot s is visible iff 0 <= (length - 1) - s < window.
        slot_of: ring only, [W] int64 absolute slot held by each ring entry, -1 when empty.
        n_splits: key chunks per (sequence, KV head); default from the SM count (see default_num_splits).
    Returns:
        o [B, H, D] in q's dtype: softmax(q k^T * D^-0.5 over the visible keys) v, accumulated in fp32.
        A row that sees no key gets zeros.

    Work and bytes scale with the real length, not S_max: programs past it exit at once and masked
    keys are never loaded. CPU tensors run through Triton's interpreter (TRITON_INTERPRET=1).

    >>> B, S, Hkv, D = 2, 4096, 4, 128
    >>> k = v = torch.zeros(B, S, Hkv, D, device="cuda", dtype=torch.bfloat16)
    >>> q = torch.randn(B, 16, D, device="cuda", dtype=torch.bfloat16)
    >>> mask = torch.ones(B, S, dtype=torch.bool, device="cuda")
    >>> decode_attention(q, k, v, torch.tensor([100], device="cuda"), mask).shape
    torch.Size([2, 16, 128])
    """
    _check(q, k, v, length, key_mask, window, slot_of, n_splits)
    key_mask = key_mask if key_mask.stride(1) == 1 else key_mask.contiguous()
    slot_of = slot_of.contiguous() if slot_of is not None else None
    return decode_attention_op(q.contiguous(), k, v, length, key_mask, window, slot_of, n_splits)


# An opaque op for torch.compile: Inductor schedules the call without tracing into it, so the launch code
# (the bool mask viewed as bytes, Python scalars) never meets Inductor's lowerings. Traced, `view(uint8)`
# of a bool tensor fails to lower ("torch.bool is not supported by torch.iinfo") and user kernels get
# Python floats as fp64. Eagerly, the op is the launch code itself.
@torch.library.custom_op("lt2::decode_attention", mutates_args=())
def decode_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    length: torch.Tensor,
    key_mask: torch.Tensor,
    window: int | None,
    slot_of: torch.Tensor | None,
    n_splits: int | None,
) -> torch.Tensor:
    """decode_attention_fwd as a registered op (arguments already checked): o [B, H, D] like q."""
    return decode_attention_fwd(q, k, v, length, key_mask, window, slot_of, n_splits)


@decode_attention_op.register_fake
def _decode_attention_fake(q, k, v, length, key_mask, window, slot_of, n_splits) -> torch.Tensor:
    return torch.empty_like(q)
