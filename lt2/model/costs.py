"""Analytic costs of a looped LM (the paper's Table 1): parameters, FLOPs per token, cache bytes.

Parameters and cache sizes are exact: they come from building the model and its decode state on the
meta device (no memory is touched), so they cannot drift from the implementation. FLOPs are analytic:

    forward FLOPs/token = 2 * (matmul weights of the stack) * loop_count + 2 * dim * vocab  (head)
                        + sum over (loop, layer) of the mixer's sequence-mixing FLOPs at context L
    train FLOPs/token   = 3 * forward  (backward = 2 * forward)

Sequence mixing per token (forward, averaged over the L positions of a causal sequence):
    full      4 * H * D * mean_t(t)            = 4 * H * D * (L + 1) / 2
    window    4 * H * D * mean_t(min(t, W))
    others    each mixer's `mixing_flops(L, spec)` (recurrent state updates, indexer scores, ...)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lt2.config import ModelArgs


@dataclass
class ModelInfo:
    params: int  # trainable parameters (tied embeddings counted once)
    embedding_params: int
    non_embedding_params: int
    layer_params: list[int]  # per physical layer
    effective_depth: int  # n_layers * loop_count
    mixer_map: list[list[str]]  # [loop][layer]
    seq_len: int  # context the FLOPs and cache figures are for
    forward_flops_per_token: float
    train_flops_per_token: float
    cache_bytes_per_token: int  # bf16 decode cache that grows with every token (KV of full-attention layers)
    state_bytes: int  # per-sequence cache of fixed size at seq_len (recurrent/conv states, window rings)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def cache_bytes(self, context: int) -> int:
        """Decode cache of one sequence at `context` tokens (bf16 KV, fp32 states as allocated)."""
        return self.state_bytes + self.cache_bytes_per_token * context


def meta_model(args: ModelArgs) -> nn.Module:
    from lt2.model.looped import LoopedLM  # looped imports this module's siblings

    with torch.device("meta"):
        return LoopedLM(args)


def _mean_visible(context: int, window: int | None) -> float:
    """Mean number of keys a causal query sees over positions 1..context (within `window`)."""
    if window is None or window >= context:
        return (context + 1) / 2
    return (window * (window + 1) / 2 + window * (context - window)) / context


def mixing_flops(mixer: nn.Module, context: int, spec) -> float:
    """Forward sequence-mixing FLOPs per token of one (loop, layer), excluding projections."""
    if hasattr(mixer, "mixing_flops"):
        return float(mixer.mixing_flops(context, spec))
    # Softmax attention (full / window): QK^T and AV, 2 FLOPs per multiply-add each.
    return 4.0 * mixer.n_heads * mixer.head_dim * _mean_visible(context, spec.window)


def _state_nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_state_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_state_nbytes(o) for o in obj.values())
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_state_nbytes(getattr(obj, f)) for f in obj.__dataclass_fields__)
    return 0


def cache_bytes(model: nn.Module, context: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of all (loop, layer) caches of one sequence allocated for `context` slots (meta device)."""
    state = model.allocate_state(1, context, device="meta", dtype=dtype)
    return _state_nbytes(state.caches)


def model_info(args: ModelArgs, seq_len: int) -> ModelInfo:
    model = meta_model(args)
    params = sum(p.numel() for p in model.parameters())
    embedding = model.embed.weight.numel() + (model.head.weight.numel() if model.head is not None else 0)
    layer_params = [sum(p.numel() for p in block.parameters()) for block in model.layers]
    matmul_weights = sum(m.weight.numel() for m in model.layers.modules() if isinstance(m, nn.Linear))
    forward = 2.0 * matmul_weights * args.loop_count + 2.0 * args.dim * args.vocab_size
    layout = model.layout
    for loop in range(args.loop_count):
        for layer, block in enumerate(model.layers):
            forward += mixing_flops(block.mixer, seq_len, layout.specs[loop][layer])
    at, after = cache_bytes(model, seq_len), cache_bytes(model, seq_len + 1)
    per_token = after - at
    return ModelInfo(
        params=params,
        embedding_params=embedding,
        non_embedding_params=params - embedding,
        layer_params=layer_params,
        effective_depth=args.n_layers * args.loop_count,
        mixer_map=layout.table(),
        seq_len=seq_len,
        forward_flops_per_token=forward,
        train_flops_per_token=3.0 * forward,
        cache_bytes_per_token=per_token,
        state_bytes=at - per_token * seq_len,
    )


def decode_step_bytes(args: ModelArgs, info: ModelInfo, batch: int, context: int, weight_bytes: int = 2) -> float:
    """HBM bytes one decode step must move at least: every layer's weights once per loop, the head
    once, each sequence's KV cache read once and its fixed-size states read and written once."""
    layer_weights = sum(info.layer_params) * weight_bytes * args.loop_count
    head = args.vocab_size * args.dim * weight_bytes
    growing = info.cache_bytes_per_token * context * batch
    fixed = 2 * info.state_bytes * batch
    return float(layer_weights + head + growing + fixed)


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}"
        n /= 1000
    return f"{n:.3g}E{unit}"


def format_model_info(name: str, info: ModelInfo) -> str:
    lines = [
        f"recipe            {name}",
        f"parameters        {info.params:,} ({_human(info.params)}; embedding {info.embedding_params:,}, "
        f"non-embedding {info.non_embedding_params:,})",
        f"effective depth   {info.effective_depth} ({len(info.layer_params)} layers x {len(info.mixer_map)} loops)",
        f"train FLOPs/token {_human(info.train_flops_per_token)} at context {info.seq_len}",
        f"cache             {_human(info.cache_bytes_per_token, 'B')}/token + {_human(info.state_bytes, 'B')} fixed "
        f"per sequence (bf16 KV) = {_human(info.cache_bytes(info.seq_len), 'B')} at {info.seq_len}",
        "mixer map (loop x layer):",
    ]
    for loop, row in enumerate(info.mixer_map):
        lines.append(f"  loop {loop}: " + " ".join(row))
    return "\n".join(lines)
