"""Analytic costs of a looped LM (the paper's Table 1): parameters, FLOPs per token, cache bytes.

Parameters and cache sizes are exact: they come from building the model and its decode state on the
meta device (no memory is touched), so they cannot drift from the implementation. FLOPs are analytic:

    forward FLOPs/token = 2 * (matmul weights of the stack) * loop_count + 2 * dim * vocab  (head)
                        + sum over (loop, layer) of the mixer's sequence-mixing FLOPs at context L
    train FLOPs/token   = 3 * forward  (backward = 2 * forward)

Sequence mixing per token (forward, averaged over the L positions of a causal sequence) is each mixer's
`mixing_flops(L, spec)`: 4 H D (L + 1) / 2 for full attention, 4 H D mean(min(t, W)) for a window, the
chunked recurrences' matmuls for linear mixers (independent of L), indexer + top-k attention for DSA.

The decode roofline counts the bytes one step must move at least: every layer's weights once per loop,
the head once, and each mixer's `decode_bytes` (KV read once, recurrent states read and written).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lt2.config import ModelArgs
from lt2.mixers.base import tensor_bytes
from lt2.model.vote import VoteState


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


def cache_bytes(model: nn.Module, context: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of all (loop, layer) caches of one sequence allocated for `context` slots (meta device); for a
    random layout, of one placement (its vote keeps `vote_k` of them)."""
    state = model.allocate_state(1, context, device="meta", dtype=dtype)
    return tensor_bytes(state.members[0].caches if isinstance(state, VoteState) else state.caches)


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
            forward += block.mixer.mixing_flops(seq_len, layout.specs[loop][layer])
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


def decode_step_bytes(model: nn.Module, batch: int, context: int, dtype: torch.dtype = torch.bfloat16) -> float:
    """HBM bytes one decode step of `batch` sequences at `context` tokens must move at least: every layer's
    weights once per loop, the head once, and each (loop, layer) mixer's cache traffic per sequence."""
    layer_weights = sum(p.numel() for p in model.layers.parameters()) * model.args.loop_count
    head = model.args.vocab_size * model.args.dim
    caches = sum(
        block.mixer.decode_bytes(context, model.layout.specs[loop][layer], dtype)
        for loop in range(model.args.loop_count)
        for layer, block in enumerate(model.layers)
    )
    return float((layer_weights + head) * dtype.itemsize + batch * caches)


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
