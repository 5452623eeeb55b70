"""Thin glue to flash-linear-attention (fla >= 0.6) kernels, with the same arguments as our references.

One signature for the three families; the gate's shape picks the kernel:

    g None        -> fla.ops.delta_rule        chunk_delta_rule / fused_recurrent_delta_rule        (DeltaNet)
    g [B, T, H]   -> fla.ops.gated_delta_rule  chunk_gated_delta_rule / fused_recurrent_gated_...   (GDN)
    g [B, T, H, K]-> fla.ops.kda               chunk_kda / fused_recurrent_kda                      (KDA)

What we pass and why: g is already in log space (we compute the gate in PyTorch, so the reference and the
fast path share it; fla's `use_gate_in_kernel` stays off), beta is already after the sigmoid
(`use_beta_sigmoid_in_kernel` off), the state uses fla's default [N, H, K, V] layout (`state_v_first`
off), and `use_qk_l2norm_in_kernel` does fla's x / sqrt(sum x^2 + 1e-6) like `utils.l2norm`.
fla 0.6 has no `head_first` argument: inputs are [B, T, H, D]. With cu_seqlens the batch must be 1.

fla is imported inside the functions: it imports Triton at import time, which CPU machines lack.
CUDA only; the dtype rules are fla's: bf16/fp16 q/k/v (chunk_delta_rule refuses fp32), fp32 states.
"""

from __future__ import annotations

import importlib

import torch

from lt2.kernels.delta_rule.utils import check_inputs

# fla's chunk_kda asserts this key head dim limit.
KDA_MAX_HEAD_DIM = 256


def _check_fla(q: torch.Tensor, g: torch.Tensor | None, chunked: bool) -> None:
    if not q.is_cuda:
        raise ValueError(f"fla kernels run on CUDA only, got a tensor on {q.device}; use chunk_delta_rule")
    if g is not None and g.ndim == 4 and q.shape[-1] > KDA_MAX_HEAD_DIM:
        raise ValueError(f"fla's KDA kernels support head dims up to {KDA_MAX_HEAD_DIM}, got {q.shape[-1]}")
    if chunked and g is None and q.dtype == torch.float32:
        raise ValueError("fla's chunk_delta_rule does not support fp32 inputs; use bf16/fp16 or chunk_delta_rule")


# (gate form, chunked) -> fla module and function; the gate's shape picks the family (see above)
_KERNELS = {
    ("none", True): ("fla.ops.delta_rule", "chunk_delta_rule"),
    ("none", False): ("fla.ops.delta_rule", "fused_recurrent_delta_rule"),
    ("head", True): ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"),
    ("head", False): ("fla.ops.gated_delta_rule", "fused_recurrent_gated_delta_rule"),
    ("key", True): ("fla.ops.kda", "chunk_kda"),
    ("key", False): ("fla.ops.kda", "fused_recurrent_kda"),
}


def _run_fla(chunked: bool, q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens):
    check_inputs(q, k, v, beta, g, initial_state, cu_seqlens)
    _check_fla(q, g, chunked)
    return _launch_fla(chunked, q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens)


def _launch_fla(chunked: bool, q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens):
    form = "none" if g is None else "head" if g.ndim == 3 else "key"
    module, name = _KERNELS[form, chunked]
    kernel = getattr(importlib.import_module(module), name)
    gate = {} if g is None else {"g": g}
    # Keywords throughout: fused_recurrent_gated_delta_rule's positional order is (q, k, v, g, gk, gv, beta, ...).
    return kernel(
        q=q,
        k=k,
        v=v,
        beta=beta,
        **gate,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        use_qk_l2norm_in_kernel=use_qk_l2norm,
        cu_seqlens=cu_seqlens,
    )


def fla_chunk_delta_rule(
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fla's chunked kernels (training and prefill, with backward); arguments as `chunk_delta_rule`.

    q, k [B, T, H, K]; v [B, T, H, V]; beta [B, T, H]; g None | [B, T, H] | [B, T, H, K] (log decay);
    initial_state [N, H, K, V] fp32; cu_seqlens [N+1] (B == 1). Returns o [B, T, H, V] in q's dtype and
    the final state [N, H, K, V] fp32 (or None).

    >>> o, S = fla_chunk_delta_rule(q, k, v, beta, g, use_qk_l2norm=True, output_final_state=True)  # doctest: +SKIP
    """
    return _run_fla(True, q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens)


def fla_fused_recurrent_delta_rule(
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fla's token-by-token kernels: the decode step (one launch, no host syncs, so CUDA-graph capturable).

    Same arguments and returns as `fla_chunk_delta_rule`. Inference only: fla's gated recurrent kernels
    have no backward. The final state is a new tensor; the caller copies it into its cache.

    >>> o, S = fla_fused_recurrent_delta_rule(q, k, v, beta, g, initial_state=S,  # doctest: +SKIP
    ...                                       output_final_state=True)
    """
    if cu_seqlens is None and output_final_state and not _needs_grad(q, k, v, beta, g, initial_state):
        check_inputs(q, k, v, beta, g, initial_state, cu_seqlens)
        _check_fla(q, g, False)
        return fla_recurrent_delta_rule_op(q, k, v, beta, g, scale, initial_state, use_qk_l2norm)
    return _run_fla(False, q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm, cu_seqlens)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# The decode step as an opaque op for torch.compile: traced, fla's autotuned launch code breaks the graph
# (one compiled graph per mixer call instead of one per step). Outputs: o in q's dtype, the state in fp32.
@torch.library.custom_op("lt2::fla_recurrent_delta_rule", mutates_args=())
def fla_recurrent_delta_rule_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None,
    scale: float | None,
    initial_state: torch.Tensor | None,
    use_qk_l2norm: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fla fused_recurrent launch (arguments checked): o [B, T, H, V], final state [B, H, K, V] fp32."""
    o, state = _launch_fla(False, q, k, v, beta, g, scale, initial_state, True, use_qk_l2norm, None)
    return o.to(q.dtype), state.float()


@fla_recurrent_delta_rule_op.register_fake
def _fla_recurrent_delta_rule_fake(q, k, v, beta, g, scale, initial_state, use_qk_l2norm):
    B, _, H, V = v.shape
    return v.new_empty(v.shape, dtype=q.dtype), v.new_empty(B, H, q.shape[-1], V, dtype=torch.float32)
