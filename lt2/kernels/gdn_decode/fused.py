"""One gated-DeltaNet decode step in one Triton kernel: short convs, activations, L2 norms, gates, the delta
rule on the state and the gated per-head RMSNorm, between the input projections and the output projection.

Unfused, this is ~30 tiny kernels per layer and token (three convolutions with their cache shifts, SiLU,
two L2 norms, sigmoid, softplus, the recurrent kernel, RMSNorm, the gate); inside a CUDA-graph decode
step each costs more than its bytes. Fused, the step reads and writes the fp32 state once and everything
else once, which is the whole cost of a memory-bound step.

Grid (B * H,): a program owns one (sequence, head). It computes q and k for the head (Dk channels in one
padded block BK), then walks the value dimension in blocks of BV columns: per block, the v channels'
convolution, the state block [Dk, BV] decayed, corrected (the delta rule is independent per value column
once k is known) and written back, and the block's output o. RMSNorm needs all Dv outputs of the head,
so the blocks' o go to a small fp32 scratch and a second pass over the blocks normalises, gates and
stores y. A program owns its channels of every conv cache and its state slice, so in-place updates
cannot race with other programs. The math is in README.md.

Under TRITON_INTERPRET=1 (set before triton is imported) the kernel runs on CPU tensors with one pinned
configuration, so CI checks it in fp32 without a GPU.

Shapes: B batch, H heads, Dk key dim, Dv value dim, K conv kernel size; projections are [B, H*D], read with
their row strides: fused projections (lt2.model.fuse) hand over column slices of one [B, sum_out] output, and
copying each to a contiguous tensor first would add six small kernels per layer and loop.
"""

from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from lt2.kernels.gdn_decode.inputs import GDNDecodeStep

L2NORM_EPS = tl.constexpr(1e-6)  # fla's l2norm: x / sqrt(sum(x^2) + eps); constexpr to be visible in jit code


@triton.jit
def _conv_silu_step(x, conv, w, o_c, mask_c, C: tl.constexpr, K: tl.constexpr, BR: tl.constexpr):
    """silu(conv) [BC] of channels o_c for the new token x [C]; shifts the cache conv [K-1, C] in place.

    Row r of the new cache is old row r + 1 (the new token last), so a row's new value comes from another
    row: every load of the cache happens before the barrier and every store after it, whichever threads
    the compiler gives each access to.
    """
    b_x = tl.load(x + o_c, mask=mask_c, other=0.0)
    b_y = b_x.to(tl.float32) * tl.load(w + o_c * K + (K - 1), mask=mask_c, other=0.0).to(tl.float32)
    if K > 1:
        o_r = tl.arange(0, BR)
        mask_rc = (o_r < K - 1)[:, None] & mask_c[None, :]
        p_rows = conv + o_r[:, None] * C + o_c[None, :]
        b_hist = tl.load(p_rows, mask=mask_rc, other=0.0)  # [BR, BC] the previous K-1 inputs, oldest first
        b_w = tl.load(w + o_c[None, :] * K + o_r[:, None], mask=mask_rc, other=0.0)
        b_y += tl.sum(b_hist.to(tl.float32) * b_w.to(tl.float32), 0)
        mask_next = (o_r + 1 < K - 1)[:, None] & mask_c[None, :]
        b_next = tl.load(p_rows + C, mask=mask_next, other=0.0)
        b_next = tl.where((o_r == K - 2)[:, None], b_x[None, :].to(b_next.dtype), b_next)
        tl.debug_barrier()
        tl.store(p_rows, b_next, mask=mask_rc)
    return b_y * tl.sigmoid(b_y)


@triton.jit
def fused_gdn_decode_kernel(
    q_in,
    k_in,
    v_in,
    conv_q,
    conv_k,
    conv_v,
    w_q,
    w_k,
    w_v,
    a,
    b,
    A_log,
    dt_bias,
    gate,
    o_norm_weight,
    state,
    o_buf,
    y,
    eps,
    scale,
    stride_q,
    stride_k,
    stride_v,
    stride_a,
    stride_b,
    stride_gate,
    H: tl.constexpr,
    DK: tl.constexpr,
    DV: tl.constexpr,
    K: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    NV: tl.constexpr,
    BR: tl.constexpr,
    USE_GATE: tl.constexpr,
    NEG_EIGVAL: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = tl.arange(0, BK)
    mask_k = o_k < DK

    # q, k [BK]: conv + silu, then fla's l2norm; q also takes the attention scale
    o_qk = i_h * DK + o_k
    b_q = _conv_silu_step(q_in + i_b * stride_q, conv_q + i_b * (K - 1) * H * DK, w_q, o_qk, mask_k, H * DK, K, BR)
    b_k = _conv_silu_step(k_in + i_b * stride_k, conv_k + i_b * (K - 1) * H * DK, w_k, o_qk, mask_k, H * DK, K, BR)
    # scalars typed here: a caller may hand Python floats over as fp64 (Inductor does), and fp64 would then
    # spread into the loop-carried fp32 values
    scale = tl.cast(scale, tl.float32)
    eps = tl.cast(eps, tl.float32)
    b_q = b_q / tl.sqrt(tl.sum(b_q * b_q) + L2NORM_EPS) * scale
    b_k = b_k / tl.sqrt(tl.sum(b_k * b_k) + L2NORM_EPS)

    b_beta = tl.sigmoid(tl.load(b + i_b * stride_b + i_h).to(tl.float32))
    if NEG_EIGVAL:  # beta in (0, 2): the transition I - beta k k^T may have a negative eigenvalue
        b_beta = b_beta * 2.0
    b_x = tl.load(a + i_b * stride_a + i_h).to(tl.float32) + tl.load(dt_bias + i_h).to(tl.float32)
    # softplus as torch and fla compute it (linear above 20); its absolute error (<~1e-7) is far below a decay's
    b_softplus = tl.where(b_x < 20.0, tl.log(1.0 + tl.exp(b_x)), b_x)
    b_decay = tl.exp(-tl.exp(tl.load(A_log + i_h).to(tl.float32)) * b_softplus)
    b_kbeta = b_k * b_beta

    # pass 1: per value block, the state update and the unnormalised output
    p_state = state + i_bh * DK * DV
    b_sq = tl.zeros([BV], dtype=tl.float32)
    for i_v in range(NV):
        o_v = i_v * BV + tl.arange(0, BV)
        mask_v = o_v < DV
        o_vc = i_h * DV + o_v
        b_v = _conv_silu_step(v_in + i_b * stride_v, conv_v + i_b * (K - 1) * H * DV, w_v, o_vc, mask_v, H * DV, K, BR)
        p_s = p_state + o_k[:, None] * DV + o_v[None, :]
        mask_s = mask_k[:, None] & mask_v[None, :]
        b_s = tl.load(p_s, mask=mask_s, other=0.0) * b_decay  # [BK, BV]
        b_u = b_v - tl.sum(b_s * b_k[:, None], 0)  # [BV] error of the decayed state's read-out
        b_s += b_kbeta[:, None] * b_u[None, :]
        b_o = tl.sum(b_s * b_q[:, None], 0)  # [BV]
        tl.store(p_s, b_s, mask=mask_s)
        tl.store(o_buf + i_bh * DV + o_v, b_o, mask=mask_v)
        b_sq += b_o * b_o  # masked columns are exactly 0
    # pass 2 reads o values that other threads of this program wrote
    tl.debug_barrier()
    b_rstd = 1.0 / tl.sqrt(tl.sum(b_sq) / DV + eps)
    for i_v in range(NV):
        o_v = i_v * BV + tl.arange(0, BV)
        mask_v = o_v < DV
        b_y = tl.load(o_buf + i_bh * DV + o_v, mask=mask_v, other=0.0) * b_rstd
        b_y *= tl.load(o_norm_weight + o_v, mask=mask_v, other=0.0).to(tl.float32)
        if USE_GATE:
            b_g = tl.load(gate + i_b * stride_gate + i_h * DV + o_v, mask=mask_v, other=0.0).to(tl.float32)
            b_y *= b_g * tl.sigmoid(b_g)
        tl.store(y + i_bh * DV + o_v, b_y.to(y.dtype.element_ty), mask=mask_v)


def fused_gdn_decode_fwd(step: GDNDecodeStep, block_v: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    """Allocate y and the o scratch and launch; the step already checked. `block_v`/`num_warps` for sweeps."""
    B, H, Dk, Dv = step.state.shape
    K = step.w_q.shape[1]
    BK = triton.next_power_of_2(Dk)
    if block_v is None:
        if step.state.is_cuda:
            # At decode batch sizes B * H programs are at most one per SM, so what counts is the bytes one
            # program has in flight: the loop over value blocks is not software-pipelined, so take the
            # whole state in one tile up to 32K fp32 (1.3B: 96(128) x 192(256), 181 registers at 8 warps).
            block_v = max(16, min(triton.next_power_of_2(Dv), 32768 // BK))
        else:
            block_v = 32  # the interpreter runs the same loop; 32 gives several value blocks at test sizes
    BV = min(block_v, triton.next_power_of_2(Dv))
    if num_warps is None:
        num_warps = 8 if BK * BV >= 16384 else 4  # about 64-128 state values per thread
    y = torch.empty(B, H * Dv, dtype=step.q_in.dtype, device=step.q_in.device)
    o_buf = torch.empty(B, H * Dv, dtype=torch.float32, device=step.q_in.device)
    if not step.state.is_cuda and not isinstance(fused_gdn_decode_kernel, InterpretedFunction):
        raise RuntimeError(
            "the fused GDN decode kernel got CPU tensors but Triton's interpreter is off: set TRITON_INTERPRET=1 "
            "before triton is first imported, or use naive_gdn_decode_step on CPU"
        )
    tensors = step.tensors()
    if step.gate is None:
        tensors["gate"] = y  # unused without a gate; any pointer will do
    strides = {f"stride_{name.removesuffix('_in')}": tensors[name].stride(0) for name in step.TOKEN}
    # the interpreter ignores launch options: whatever is pinned here is the one config it runs
    fused_gdn_decode_kernel[(B * H,)](
        **tensors,
        **strides,
        o_buf=o_buf,
        y=y,
        eps=step.eps,
        scale=Dk**-0.5,
        H=H,
        DK=Dk,
        DV=Dv,
        K=K,
        BK=BK,
        BV=BV,
        NV=triton.cdiv(Dv, BV),
        BR=triton.next_power_of_2(max(K - 1, 1)),  # conv cache rows, padded
        USE_GATE=step.gate is not None,
        NEG_EIGVAL=step.allow_neg_eigval,
        num_warps=num_warps,
        num_stages=1,
    )
    return y


def _check(step: GDNDecodeStep) -> None:
    """Raise ValueError, naming the bad argument and its expected shape, unless the step is well formed."""
    tensors = step.tensors()
    state = step.state
    if state.ndim != 4 or state.dtype != torch.float32:
        raise ValueError(f"state must be [B, H, Dk, Dv] fp32, got {tuple(state.shape)} {state.dtype}")
    B, H, Dk, Dv = state.shape
    if Dk > 256 or Dv < 1:
        raise ValueError(f"Dk={Dk} > 256 is not supported (one [Dk, BV] register tile), or Dv={Dv} < 1")
    w_q = step.w_q
    if w_q.ndim != 2 or w_q.shape[1] < 1:
        raise ValueError(f"w_q must be [H*Dk, K] = [{H * Dk}, K] with K >= 1, got {tuple(w_q.shape)}")
    K = w_q.shape[1]
    expected = {
        "q_in": (B, H * Dk),
        "k_in": (B, H * Dk),
        "v_in": (B, H * Dv),
        "conv_q": (B, K - 1, H * Dk),
        "conv_k": (B, K - 1, H * Dk),
        "conv_v": (B, K - 1, H * Dv),
        "w_q": (H * Dk, K),
        "w_k": (H * Dk, K),
        "w_v": (H * Dv, K),
        "a": (B, H),
        "b": (B, H),
        "A_log": (H,),
        "dt_bias": (H,),
        "gate": (B, H * Dv),
        "o_norm_weight": (Dv,),
    }
    for name, shape in expected.items():
        x = tensors[name]
        if x is None and name == "gate":
            continue
        if tuple(x.shape) != shape:
            dims = f"B={B}, H={H}, Dk={Dk}, Dv={Dv}, K={K} (from state and w_q)"
            raise ValueError(f"{name} must have shape {list(shape)} for {dims}, got {list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    dtypes = {tensors[n].dtype for n in ("q_in", "k_in", "v_in")}
    if len(dtypes) > 1:
        raise ValueError(f"q_in, k_in and v_in must share one dtype (y takes it), got {sorted(map(str, dtypes))}")
    for name in step.IN_PLACE:
        if not tensors[name].is_contiguous():
            raise ValueError(f"{name} is updated in place and must be contiguous, got strides {tensors[name].stride()}")
    devices = {x.device for x in tensors.values() if x is not None}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if not step.eps > 0:
        raise ValueError(f"eps must be > 0, got {step.eps}")
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in tensors.values()):
        raise ValueError("fused_gdn_decode_step has no backward (decode only); call it under torch.no_grad()")


def fused_gdn_decode_step(step: GDNDecodeStep) -> torch.Tensor:
    """One gated-DeltaNet decode step, fused: conv caches and state are updated in place, y is returned.

    Everything between the layer's input projections and its output projection, for one token:
    q = l2norm(silu(conv(q_in))) * Dk^-0.5, k = l2norm(silu(conv(k_in))), v = silu(conv(v_in)),
    beta = sigmoid(b) (x 2 with allow_neg_eigval), g = -exp(A_log) * softplus(a + dt_bias);
    S = exp(g) S, u = v - S^T k, S += beta k u^T, o = S^T q;
    y = rms_norm(o, o_norm_weight, eps) * silu(gate). fp32 inside.
    The fields of `step` (shapes, what is updated in place) are documented on GDNDecodeStep.

    Returns y [B, H*Dv] in q_in's dtype, ready for the output projection. Raises ValueError naming the
    bad field unless the step is well formed. Graph-capturable (no host syncs). CPU tensors run through
    Triton's interpreter (TRITON_INTERPRET=1).

    >>> from lt2.testing import random_gdn_decode_step
    >>> step = random_gdn_decode_step(8, 16, 96, 192, 4, device="cuda", dtype=torch.bfloat16)
    >>> y = fused_gdn_decode_step(step)
    >>> y.shape, y.dtype
    (torch.Size([8, 3072]), torch.bfloat16)
    """
    _check(step)
    # read-only inputs: contiguous() is free when they already are (parameters are); the token's projections
    # only need contiguous rows (the kernel takes their row strides), so fused projections' slices pass as views
    read_only = {
        n: x if n in step.TOKEN and x.stride(-1) == 1 else x.contiguous()
        for n, x in step.tensors().items()
        if x is not None and n not in step.IN_PLACE
    }
    step = dataclasses.replace(step, **read_only)
    # the fields themselves (dataclasses.asdict would deep-copy them, and the in-place updates with them)
    return fused_gdn_decode_op(**{f.name: getattr(step, f.name) for f in dataclasses.fields(step)})


# An opaque op for torch.compile: Inductor schedules the call without tracing into it (traced, user Triton
# kernels receive Python floats as fp64, and fp64 then leaks into the kernel's loop-carried fp32 values).
# It declares the caches and the state it updates in place, so functionalization keeps the updates.
@torch.library.custom_op("lt2::fused_gdn_decode", mutates_args=GDNDecodeStep.IN_PLACE)
def fused_gdn_decode_op(
    q_in: torch.Tensor,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
    conv_q: torch.Tensor,
    conv_k: torch.Tensor,
    conv_v: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    gate: torch.Tensor | None,
    o_norm_weight: torch.Tensor,
    eps: float,
    state: torch.Tensor,
    allow_neg_eigval: bool = False,
) -> torch.Tensor:
    """fused_gdn_decode_fwd of the step these fields make (already checked): y [B, H*Dv] in q_in's dtype."""
    fields = dict(locals())
    return fused_gdn_decode_fwd(GDNDecodeStep(**fields))


@fused_gdn_decode_op.register_fake
def _fused_gdn_decode_fake(q_in, k_in, v_in, conv_q, conv_k, conv_v, w_q, w_k, w_v, a, b, A_log, dt_bias, gate,
                           o_norm_weight, eps, state, allow_neg_eigval=False) -> torch.Tensor:  # fmt: skip
    B, H, _, Dv = state.shape
    return q_in.new_empty(B, H * Dv)
