"""Ouro checkpoints load without remote code: strict key/shape mapping and a forward equal to Ouro's equations.

A random tiny checkpoint with Ouro's real tensor names and an HF-style config.json is written in the test;
`reference_forward` is an independent transcription of Ouro's forward (sandwich norms, the final norm after
every loop feeding the next, untied head, last loop's logits) in plain torch.

Run: pytest tests/distill/test_ouro.py
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lt2.distill.ouro import convert_ouro, download_ouro, load_ouro
from lt2.model import LoopedLM
from lt2.testing import assert_close, incremental_logits

CONFIG = {
    "architectures": ["OuroForCausalLM"],
    "model_type": "ouro",
    "vocab_size": 61,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 48,
    "rms_norm_eps": 1e-6,
    "rope_theta": 5000.0,  # not the default: it must be read from config.json
    "max_position_embeddings": 64,
    "total_ut_steps": 3,
    "early_exit_threshold": 1.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
LAYER_SHAPES = {
    "self_attn.q_proj.weight": (32, 32),
    "self_attn.k_proj.weight": (32, 32),
    "self_attn.v_proj.weight": (32, 32),
    "self_attn.o_proj.weight": (32, 32),
    "mlp.gate_proj.weight": (48, 32),
    "mlp.up_proj.weight": (48, 32),
    "mlp.down_proj.weight": (32, 48),
    "input_layernorm.weight": (32,),
    "input_layernorm_2.weight": (32,),
    "post_attention_layernorm.weight": (32,),
    "post_attention_layernorm_2.weight": (32,),
}


def random_ouro_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return scale * torch.randn(shape, generator=gen)

    state = {"model.embed_tokens.weight": rand(61, 32, scale=1.0)}
    for i in range(config["num_hidden_layers"]):
        for name, shape in LAYER_SHAPES.items():
            state[f"model.layers.{i}.{name}"] = (
                1 + rand(*shape) if name.endswith("norm.weight") or "layernorm" in name else rand(*shape)
            )
    state["model.norm.weight"] = 1 + rand(32)
    state["model.early_exit_gate.weight"] = rand(1, 32)
    state["model.early_exit_gate.bias"] = rand(1)
    state["lm_head.weight"] = rand(61, 32)
    return state


def write_ouro(path, state=None, config=None):
    path.mkdir(parents=True, exist_ok=True)
    config = config or CONFIG
    (path / "config.json").write_text(json.dumps(config))
    save_file(state if state is not None else random_ouro_state(config), str(path / "model.safetensors"))
    return path


# ------------------------------------------------------------------ Ouro's equations, written out
def rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):  # x [B, T, H, D], half-split rotation as in HF Llama
    T, D = x.shape[1], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, D, 2).float() / D)
    ang = torch.arange(T).float()[:, None] * inv  # [T, D/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[None, :, None], torch.cat([ang.sin()] * 2, -1)[None, :, None]
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def reference_forward(state, config, tokens):
    B, T = tokens.shape
    H = config["num_attention_heads"]
    D = config["hidden_size"] // H
    h = state["model.embed_tokens.weight"][tokens]
    for _ in range(config["total_ut_steps"]):
        for i in range(config["num_hidden_layers"]):
            p = {k.split(f"model.layers.{i}.")[1]: v for k, v in state.items() if k.startswith(f"model.layers.{i}.")}
            x = rms(h, p["input_layernorm.weight"])
            q = rope((x @ p["self_attn.q_proj.weight"].T).view(B, T, H, D), config["rope_theta"])
            k = rope((x @ p["self_attn.k_proj.weight"].T).view(B, T, H, D), config["rope_theta"])
            v = (x @ p["self_attn.v_proj.weight"].T).view(B, T, H, D)
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / D**0.5
            scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
            attn = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(B, T, H * D)
            h = h + rms(attn @ p["self_attn.o_proj.weight"].T, p["input_layernorm_2.weight"])
            x = rms(h, p["post_attention_layernorm.weight"])
            mlp = (F.silu(x @ p["mlp.gate_proj.weight"].T) * (x @ p["mlp.up_proj.weight"].T)) @ p[
                "mlp.down_proj.weight"
            ].T
            h = h + rms(mlp, p["post_attention_layernorm_2.weight"])
        h = rms(h, state["model.norm.weight"])  # after every loop; the normed output feeds the next loop
    return h @ state["lm_head.weight"].T


# ------------------------------------------------------------------------------------------ tests
def test_ouro_forward_and_decode_equal_the_reference(tmp_path):
    state = random_ouro_state(CONFIG)
    model = load_ouro(write_ouro(tmp_path, state)).eval()
    assert model.args.rope_theta == 5000.0 and model.args.loop_count == 3 and not model.args.tie_embeddings
    tokens = torch.randint(0, 61, (2, 13), generator=torch.Generator().manual_seed(1))
    expected = reference_forward(state, CONFIG, tokens)
    assert_close("forward", model(tokens), expected, rtol=1e-5, atol=1e-5)
    # prefill 5 + 4 tokens, then 4 one-token steps: one cache per (loop, layer)
    assert_close("decode", incremental_logits(model, tokens, [5, 9]), expected, rtol=1e-5, atol=1e-5)


def test_convert_writes_our_model_folder(tmp_path):
    from lt2.cli import main

    src = write_ouro(tmp_path / "ouro")
    model = convert_ouro(src, tmp_path / "out").eval()
    loaded = LoopedLM.from_pretrained(tmp_path / "out").eval()
    tokens = torch.randint(0, 61, (1, 9))
    torch.testing.assert_close(loaded(tokens), model(tokens), rtol=0, atol=0)
    assert main(["convert", "ouro", str(src), str(tmp_path / "cli")]) == 0  # `lt2 convert ouro`, with provenance
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
        record = json.loads((tmp_path / "cli" / f"{name}.prov.json").read_text())
        assert record["config"]["convert"] == "ouro"
    assert main(["convert", "ouro", str(tmp_path / "cli"), str(tmp_path / "again")]) == 2  # ours is not Ouro


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s, c: s.pop("model.layers.1.input_layernorm_2.weight"),
            "lacks 'model.layers.1.input_layernorm_2.weight'",
        ),
        (
            lambda s, c: s.__setitem__("model.layers.2.mlp.up_proj.weight", torch.zeros(40, 32)),
            "'model.layers.2.mlp.up_proj.weight' has shape (40, 32), expected (48, 32)",
        ),
        (lambda s, c: s.__setitem__("model.layers.0.self_attn.q_proj.bias", torch.zeros(32)), "q_proj.bias"),
        (lambda s, c: c.__setitem__("model_type", "llama"), "model_type='llama'"),
        (lambda s, c: c.__setitem__("num_hidden_layers", 4), "lacks 'model.layers.3.self_attn.q_proj.weight'"),
        (lambda s, c: c.__setitem__("rope_scaling", {"type": "yarn"}), "rope_scaling"),
    ],
    ids=["missing-norm", "wrong-shape", "unexpected-bias", "llama", "more-layers", "rope-scaling"],
)
def test_other_checkpoints_are_refused_naming_the_first_mismatch(tmp_path, edit, message):
    state, config = random_ouro_state(CONFIG), dict(CONFIG)
    edit(state, config)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_ouro(write_ouro(tmp_path, state, config))


def test_hub_download_reads_a_pinned_snapshot(tmp_path, monkeypatch):
    """download_ouro goes through huggingface_hub's snapshot_download (offline here) on a cache laid out like the
    Hub's: the pinned tag resolves to its commit's snapshot folder, which loads."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--ByteDance--Ouro-1.4B"
    write_ouro(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder, resolved = download_ouro("ByteDance/Ouro-1.4B", "v1", cache_dir=tmp_path)
    assert resolved == commit and folder == repo / "snapshots" / commit
    assert load_ouro(folder).args.n_layers == 3
