"""The oracle: the (gated) delta rule as a per-token loop that reads like the equation.

Per head, with state S [K, V]:

    S_t = diag(exp(g_t)) S_{t-1}                      decay: none (DeltaNet), scalar (GDN) or per key (KDA)
    S_t = S_t + beta_t k_t (v_t - S_t^T k_t)^T        delta rule: write the error of the current read-out
    o_t = S_t^T (scale * q_t)

Everything runs in fp32 (fp64 when given fp64). It is the reference for `chunk_delta_rule` and for the
fla kernels, and the one-token decode step of the CPU path.
"""

from __future__ import annotations

import torch

from lt2.kernels.delta_rule.utils import check_inputs, l2norm


def naive_recurrent_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token delta rule.

    Args:
        q, k: [B, T, H, K] queries and keys (L2-normalised here when `use_qk_l2norm`).
        v: [B, T, H, V] values.
        beta: [B, T, H] write strengths (after the sigmoid).
        g: None (no decay), [B, T, H] or [B, T, H, K]: log of the decay applied before step t.
        scale: query scale, default K ** -0.5.
        initial_state: [B, H, K, V] state before the first token (zeros when None).
    Returns:
        o [B, T, H, V] in v's dtype, and the final state [B, H, K, V] (fp32 or fp64) when
        `output_final_state`, else None.

    >>> q, k = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    >>> o, S = naive_recurrent_delta_rule(q, k, torch.randn(2, 5, 3, 6), torch.rand(2, 5, 3),
    ...                                   g=-torch.rand(2, 5, 3), output_final_state=True, use_qk_l2norm=True)
    >>> o.shape, S.shape
    (torch.Size([2, 5, 3, 6]), torch.Size([2, 3, 4, 6]))
    """
    check_inputs(q, k, v, beta, g, initial_state, None)
    B, T, H, K = q.shape
    out_dtype, dtype = v.dtype, torch.promote_types(v.dtype, torch.float32)
    q, k, v, beta = q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype)
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    q = q * (K**-0.5 if scale is None else scale)
    if initial_state is None:
        S = q.new_zeros(B, H, K, v.shape[-1])
    else:
        S = initial_state.to(dtype)
    outputs = []
    for t in range(T):
        if g is not None:
            decay = g[:, t].to(dtype).exp()  # [B, H] or [B, H, K]
            S = S * (decay[..., None, None] if decay.ndim == 2 else decay[..., None])
        k_t = k[:, t]  # [B, H, K]
        error = v[:, t] - torch.einsum("bhk,bhkv->bhv", k_t, S)  # [B, H, V]
        S = S + torch.einsum("bhk,bhv->bhkv", k_t, beta[:, t, :, None] * error)
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outputs, dim=1) if outputs else v.new_zeros(v.shape)
    return o.to(out_dtype), (S if output_final_state else None)
