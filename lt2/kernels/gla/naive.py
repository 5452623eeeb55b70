"""The oracle: gated linear attention as a per-token loop that reads like the recurrence.

Per head, with state S [K, V]:

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T        g_t: one log decay per head, or one per key channel
    o_t = S_t^T (scale * q_t)

Everything runs in fp32 (fp64 when given fp64). It is the reference for `chunk_gla` and the fla kernels,
and the one-token decode step of the CPU path.
"""

from __future__ import annotations

import torch

from lt2.kernels.common import compute_dtype
from lt2.kernels.gla.utils import check_inputs, expand_gate


def naive_recurrent_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token gated linear attention.

    Args:
        q, k: [B, T, H, K] queries and keys.
        v: [B, T, H, V] values.
        g: log decay (<= 0) applied to the state before token t is written: [B, T, H] (per head),
            [B, T, H, K] (per key channel) or [H] (constant per head).
        scale: query scale, default K ** -0.5.
        initial_state: [B, H, K, V] state before the first token (zeros when None).
    Returns:
        o [B, T, H, V] in q's dtype, and the final state [B, H, K, V] (fp32, or fp64 for fp64 inputs)
        when `output_final_state`, else None.

    >>> q, k, v = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 6)
    >>> o, S = naive_recurrent_gla(q, k, v, -torch.rand(2, 5, 3), output_final_state=True)
    >>> o.shape, S.shape
    (torch.Size([2, 5, 3, 6]), torch.Size([2, 3, 4, 6]))
    """
    check_inputs(q, k, v, g, initial_state, None)
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype, dtype = q.dtype, compute_dtype(q)
    g = expand_gate(g, q).to(dtype)
    q, k, v = q.to(dtype) * (K**-0.5 if scale is None else scale), k.to(dtype), v.to(dtype)
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dtype)
    outputs = []
    for t in range(T):
        decay = g[:, t].exp()  # [B, H] or [B, H, K]
        S = S * (decay[..., None, None] if decay.ndim == 2 else decay[..., None])
        S = S + k[:, t, :, :, None] * v[:, t, :, None, :]  # [B, H, K, V]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outputs, dim=1) if outputs else q.new_zeros(B, 0, H, V)
    return o.to(out_dtype), (S if output_final_state else None)
