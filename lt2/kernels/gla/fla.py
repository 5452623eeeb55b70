"""Thin glue to flash-linear-attention (fla >= 0.6) kernels, with the same arguments as our references.

One signature for the family; the gate's shape picks the kernel:

    g [H]           -> fla.ops.simple_gla  chunk_simple_gla / fused_recurrent_simple_gla, as g_gamma  (RetNet)
    g [B, T, H]     -> fla.ops.simple_gla  chunk_simple_gla / fused_recurrent_simple_gla, as g        (Mamba2)
    g [B, T, H, K]  -> fla.ops.gla         chunk_gla / fused_recurrent_gla, as g / gk                  (HGRN2)

What we pass and why: g is already in log space (natural log; fla rescales to log2 inside), `scale` is
explicit where the family needs it (Mamba2 uses 1), the state uses fla's default [N, H, K, V] layout
(`state_v_first` off), and fla 0.6 has no `head_first` argument: inputs are [B, T, H, D]. With cu_seqlens
the batch must be 1. fla returns o in q's dtype and fp32 final states; chunk_gla wants fp32 initial states.

fla is imported inside the functions: it imports Triton at import time, which CPU machines lack.
"""

from __future__ import annotations

import torch

from lt2.kernels.gla.utils import check_inputs


def _check_cuda(q: torch.Tensor) -> None:
    if not q.is_cuda:
        raise ValueError(f"fla kernels run on CUDA only, got a tensor on {q.device}; use chunk_gla")


def _simple_gla_backward_refused(*tensors: torch.Tensor) -> bool:
    """True when fla's chunk_simple_gla would refuse the backward of a data-dependent per-head gate.

    fla 0.6 raises in chunk_bwd_dqkwg for gated inputs on Hopper with 3.4 <= Triton < 3.7.1 (fla issue
    #640), and its TileLang replacement rejects simple_gla because that backward keeps h in fp32. chunk_gla
    has its own backward kernels, so a per-head gate broadcast over K is routed there instead (slower, same
    math). Only when a gradient will be taken: forward-only calls keep the faster kernel.
    """
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return False
    from fla.utils import IS_NVIDIA_HOPPER, TRITON_ABOVE_3_4_0, TRITON_ABOVE_3_7_1

    return bool(IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1)


def fla_chunk_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fla's chunked kernels (training and prefill, with backward); arguments as `chunk_gla`.

    q, k [B, T, H, K]; v [B, T, H, V]; g [B, T, H] | [B, T, H, K] | [H] (log decay); initial_state
    [N, H, K, V] fp32; cu_seqlens [N+1] (B == 1). Returns o [B, T, H, V] in q's dtype and the final state
    [N, H, K, V] fp32 (or None).

    >>> o, S = fla_chunk_gla(q, k, v, g, output_final_state=True)  # doctest: +SKIP
    """
    check_inputs(q, k, v, g, initial_state, cu_seqlens)
    _check_cuda(q)
    if cu_seqlens is None and output_final_state and not _needs_grad(q, k, v, g, initial_state):
        return fla_recurrent_gla_op(q, k, v, g, scale, initial_state)
    return _launch_recurrent(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _launch_recurrent(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens):
    """The fla kernel that `g`'s shape picks (see the module docstring), arguments already checked."""
    common = dict(
        scale=scale, initial_state=initial_state, output_final_state=output_final_state, cu_seqlens=cu_seqlens
    )
    if g.ndim == 1:
        from fla.ops.simple_gla import chunk_simple_gla

        return chunk_simple_gla(q=q, k=k, v=v, g_gamma=g.float(), **common)
    if g.ndim == 3 and not _simple_gla_backward_refused(q, k, v, g):
        from fla.ops.simple_gla import chunk_simple_gla

        return chunk_simple_gla(q=q, k=k, v=v, g=g, **common)
    from fla.ops.gla import chunk_gla

    if g.ndim == 3:  # per-head gate through the per-channel kernel (see _simple_gla_backward_refused)
        g = g[..., None].expand(k.shape)
    return chunk_gla(q=q, k=k, v=v, g=g, **common)


def fla_fused_recurrent_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fla's token-by-token kernel: the decode step (one launch, no host syncs, so CUDA-graph capturable).

    Same arguments and returns as `fla_chunk_gla`. The final state is a new fp32 tensor; the caller copies
    it into its cache.

    >>> o, S = fla_fused_recurrent_gla(q, k, v, g, initial_state=S, output_final_state=True)  # doctest: +SKIP
    """
    check_inputs(q, k, v, g, initial_state, cu_seqlens)
    _check_cuda(q)
    if cu_seqlens is None and output_final_state and not _needs_grad(q, k, v, g, initial_state):
        return fla_recurrent_gla_op(q, k, v, g, scale, initial_state)
    return _launch_recurrent(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _launch_recurrent(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens):
    """The fla kernel that `g`'s shape picks (see the module docstring), arguments already checked."""
    common = dict(
        scale=scale, initial_state=initial_state, output_final_state=output_final_state, cu_seqlens=cu_seqlens
    )
    if g.ndim == 4:
        from fla.ops.gla import fused_recurrent_gla

        return fused_recurrent_gla(q=q, k=k, v=v, gk=g, **common)
    from fla.ops.simple_gla import fused_recurrent_simple_gla

    if g.ndim == 1:
        return fused_recurrent_simple_gla(q=q, k=k, v=v, g_gamma=g.float(), **common)
    return fused_recurrent_simple_gla(q=q, k=k, v=v, g=g, **common)


# The decode step as an opaque op for torch.compile: traced, fla's autotuned launch code breaks the graph
# (one compiled graph per mixer call instead of one per step). Outputs: o in q's dtype, the state in fp32.
@torch.library.custom_op("lt2::fla_recurrent_gla", mutates_args=())
def fla_recurrent_gla_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fla fused_recurrent launch (arguments checked): o [B, T, H, V], final state [B, H, K, V] fp32."""
    o, state = _launch_recurrent(q, k, v, g, scale, initial_state, True, None)
    return o.to(q.dtype), state.float()


@fla_recurrent_gla_op.register_fake
def _fla_recurrent_gla_fake(q, k, v, g, scale, initial_state):
    B, _, H, V = v.shape
    return v.new_empty(v.shape, dtype=q.dtype), v.new_empty(B, H, q.shape[-1], V, dtype=torch.float32)
