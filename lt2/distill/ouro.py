"""Ouro (ByteDance's looped Transformer) as a `LoopedLM`, without its remote code.

Ouro-1.4B: 24 Llama-style layers applied `total_ut_steps` = 4 times, MHA with RoPE, SwiGLU, RMSNorm, an
untied head. Two differences from the LT2 block, both ModelArgs options of our model:

    h   = x + norm_2(Attn(norm_1(x)))          sandwich_norm: input_layernorm / input_layernorm_2
    out = h + norm_4(MLP(norm_3(h)))                          post_attention_layernorm / ..._2
    h_{t+1} = norm(Stack(h_t))                 loop_norm: the final norm ends every loop and feeds the next

and no per-loop residual gate. Ouro's early-exit gate (`model.early_exit_gate`) is loaded (exit_gate) but
not used: with `early_exit_threshold` 1.0, Ouro's default, the last loop's logits are the output.

The weights map one to one (`ouro_key_map`); conversion is strict: every tensor of the checkpoint is used,
every parameter of ours is filled, every shape is checked, and the first mismatch is named.

    >>> model = load_ouro("path/to/Ouro-1.4B")      # a local folder laid out like the Hub repository
    >>> convert_ouro("path/to/Ouro-1.4B", "models/ouro-1.4b")   # our config.json + model.safetensors
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from lt2.config import ModelArgs, resolve
from lt2.model.looped import LoopedLM

logger = logging.getLogger(__name__)

ARCHITECTURE = "OuroForCausalLM"
MODEL_TYPE = "ouro"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"

# Per layer: Ouro's name under model.layers.N. -> ours under layers.N.
LAYER_KEYS = {
    "self_attn.q_proj.weight": "mixer.wq.weight",
    "self_attn.k_proj.weight": "mixer.wk.weight",
    "self_attn.v_proj.weight": "mixer.wv.weight",
    "self_attn.o_proj.weight": "mixer.wo.weight",
    "mlp.gate_proj.weight": "ffn.w1.weight",
    "mlp.up_proj.weight": "ffn.w3.weight",
    "mlp.down_proj.weight": "ffn.w2.weight",
    "input_layernorm.weight": "mixer_norm.weight",
    "input_layernorm_2.weight": "mixer_out_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "post_attention_layernorm_2.weight": "ffn_out_norm.weight",
}
GLOBAL_KEYS = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "norm.weight",
    "model.early_exit_gate.weight": "exit_gate.weight",
    "model.early_exit_gate.bias": "exit_gate.bias",
    "lm_head.weight": "head.weight",
}
# config.json keys read into ModelArgs (Ouro's name -> ours); every other architectural key is checked below.
CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "dim",
    "num_hidden_layers": "n_layers",
    "total_ut_steps": "loop_count",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "intermediate_size": "ffn_dim",
    "rms_norm_eps": "norm_eps",
    "rope_theta": "rope_theta",
    "max_position_embeddings": "max_seqlen",
}


def model_args_from_config(config: dict[str, Any]) -> ModelArgs:
    """An Ouro config.json (as a dict) -> ModelArgs; ValueError for another architecture or an unsupported option."""
    model_type, archs = config.get("model_type"), config.get("architectures") or []
    if model_type != MODEL_TYPE or ARCHITECTURE not in archs:
        raise ValueError(
            f"not an Ouro checkpoint: model_type={model_type!r}, architectures={archs}; "
            f"expected model_type={MODEL_TYPE!r} with {ARCHITECTURE!r}"
        )
    missing = [k for k in CONFIG_KEYS if k not in config and k != "num_key_value_heads"]
    if missing:
        raise ValueError(f"Ouro config.json lacks {missing[0]!r} (needs {', '.join(CONFIG_KEYS)})")
    unsupported = {
        "hidden_act": (config.get("hidden_act", "silu"), "silu"),
        "rope_scaling": (config.get("rope_scaling"), None),
        "attention_bias": (config.get("attention_bias", False), False),
        "use_sliding_window": (config.get("use_sliding_window", False), False),
        "tie_word_embeddings": (config.get("tie_word_embeddings", False), False),
    }
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise ValueError(f"Ouro config {key}={value!r} is not supported (only {supported!r})")
    threshold = config.get("early_exit_threshold", 1.0)
    if threshold != 1.0:
        logger.warning("early_exit_threshold=%s ignored: the last loop's logits are used (threshold 1.0)", threshold)
    values = {ours: config[theirs] for theirs, ours in CONFIG_KEYS.items() if theirs in config}
    head_dim = config.get("head_dim")
    if head_dim is not None:
        values["head_dim"] = head_dim
    return resolve(
        ModelArgs,
        {
            **values,
            "pattern": "full",
            "tie_embeddings": False,
            "use_residual": False,
            "gated_attn": False,
            "sandwich_norm": True,
            "loop_norm": True,
            "exit_gate": True,
        },
    )


def ouro_key_map(n_layers: int) -> dict[str, str]:
    """Every Ouro tensor name -> our parameter name, layers in order (the order mismatches are reported in)."""
    keys = {"model.embed_tokens.weight": "embed.weight"}
    for i in range(n_layers):
        keys.update({f"model.layers.{i}.{theirs}": f"layers.{i}.{ours}" for theirs, ours in LAYER_KEYS.items()})
    keys.update({k: v for k, v in GLOBAL_KEYS.items() if k != "model.embed_tokens.weight"})
    return keys


def map_state_dict(
    state: dict[str, torch.Tensor], n_layers: int, expected: dict[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Rename Ouro tensors to ours, strictly. `expected` maps our names to shapes.

    ValueError naming the first mismatch (in layer order): a tensor we need that the checkpoint lacks, a tensor
    of the checkpoint we would not use, or a shape that differs.
    """
    key_map = ouro_key_map(n_layers)
    if set(key_map.values()) != set(expected):  # our own invariant: the map covers the model exactly
        raise AssertionError(sorted(set(key_map.values()) ^ set(expected)))
    for theirs, ours in key_map.items():
        if theirs not in state:
            raise ValueError(f"Ouro checkpoint lacks {theirs!r} (-> {ours}); {len(state)} tensors present")
        if tuple(state[theirs].shape) != tuple(expected[ours]):
            raise ValueError(
                f"Ouro tensor {theirs!r} has shape {tuple(state[theirs].shape)}, expected {tuple(expected[ours])} "
                "from its config.json"
            )
    unused = [k for k in state if k not in key_map]
    if unused:
        raise ValueError(
            f"Ouro checkpoint has a tensor this architecture does not use: {unused[0]!r} (+{len(unused) - 1})"
        )
    return {ours: state[theirs] for theirs, ours in key_map.items()}


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of `directory`'s model.safetensors, or of the shards its index names."""
    from safetensors.torch import load_file

    if (directory / WEIGHTS).is_file():
        return load_file(str(directory / WEIGHTS))
    if (directory / WEIGHTS_INDEX).is_file():
        shards = sorted(set(json.loads((directory / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(str(directory / shard)).items()}
    raise ValueError(f"{directory} has neither {WEIGHTS} nor {WEIGHTS_INDEX}")


def load_ouro(directory: str | Path, device: str | torch.device = "cpu") -> LoopedLM:
    """An Ouro folder (config.json + safetensors, as on the Hub) -> LoopedLM in fp32 with the same function."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory} is not a Hugging Face model folder: config.json is missing")
    args = model_args_from_config(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = LoopedLM(args)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state = map_state_dict(read_safetensors(directory), args.n_layers, expected)
    model.to_empty(device=device)
    model.init_weights()  # non-persistent buffers (RoPE); every parameter is overwritten below
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def convert_ouro(src: str | Path, out: str | Path) -> LoopedLM:
    """Write an Ouro folder as our model folder (config.json + model.safetensors, atomically); returns the model."""
    model = load_ouro(src)
    model.save_pretrained(out)
    return model


def download_ouro(repo_id: str, revision: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """Snapshot of Hub repository `repo_id` at `revision` (config + safetensors only) -> (folder, commit).

    The token for a gated repository comes from HF_TOKEN, read by huggingface_hub itself.
    """
    from huggingface_hub import snapshot_download

    folder = Path(
        snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=["config.json", "*.safetensors", WEIGHTS_INDEX],
        )
    )
    return folder, folder.name  # the Hub cache keeps each snapshot under snapshots/<commit>/
