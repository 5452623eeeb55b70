"""Analytic costs (paper Table 1): parameter counts derived by hand, FLOPs and decode bytes per formula.

Run: pytest tests/model/test_costs.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lt2.model.costs import decode_step_bytes, meta_model, model_info
from lt2.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "config" / "recipes"
V = 128_256


def info(scale: str, row: str, seq_len: int = 4096):
    recipe = load_recipe(RECIPES / scale / f"{row}.yaml")
    return recipe, model_info(recipe.model, seq_len)


def attention_layer(d: int, ffn: int) -> int:
    # wq, wk, wv, wo (MHA, head_dim * heads = d) + SwiGLU w1, w3, w2 + two RMSNorm weights
    return 4 * d * d + 3 * d * ffn + 2 * d


def test_looped_transformer_1b():
    # 21 x (4 * 2048^2 + 3 * 2048 * 5632 + 2 * 2048) = 21 x 51,384,320 = 1,079,070,720
    # + tied embedding 128256 * 2048 = 262,668,288 + residual gate 4 * 2048 + final norm 2048
    _, i = info("1B", "looped_pure_full")
    assert attention_layer(2048, 5632) == 51_384_320
    assert i.params == 1_079_070_720 + 262_668_288 + 8_192 + 2_048 == 1_341_749_248
    assert i.effective_depth == 84
    # KV per token: 21 layers x 4 loops x (K, V) x 16 heads x 128 dims x 2 bytes
    assert i.cache_bytes_per_token == 21 * 4 * 2 * 2048 * 2 == 688_128 and i.state_bytes == 0


def test_looped_transformer_600m_is_the_401m_anchor():
    # 21 x (4 * 1024^2 + 3 * 1024 * 2816 + 2 * 1024) + 128256 * 1024 + 4 * 1024 + 1024
    _, i = info("600M", "looped_pure_full")
    assert i.params == 21 * attention_layer(1024, 2816) + V * 1024 + 4 * 1024 + 1024 == 401_128_448


def test_flagship_full_gdn_1b():
    # GDN layer (16 heads, Dk 96, Dv 192): q, k 2048 x 1536 each; v, g_proj 2048 x 3072; o_proj 3072 x 2048;
    # a_proj, b_proj 2048 x 16; A_log, dt_bias 16 each; short convs (1536 + 1536 + 3072) x 4; o_norm 192.
    gdn_mixer = 2 * 2048 * 1536 + 2 * 2048 * 3072 + 3072 * 2048 + 2 * 2048 * 16 + 2 * 16 + 6144 * 4 + 192
    assert gdn_mixer == 25_256_160
    gdn_layer = gdn_mixer + 3 * 2048 * 5632 + 2 * 2048
    _, i = info("1B", "looped_hybrid_gdn_4to1")
    assert i.mixer_map[0].count("gdn") == 17 and i.mixer_map[0].count("full") == 4
    expected = 17 * gdn_layer + 4 * attention_layer(2048, 5632) + V * 2048 + 4 * 2048 + 2048
    assert i.params == expected == 1_485_891_296
    # Only the 4 full layers grow a KV cache; 17 x 4 GDN states (fp32) + conv inputs (bf16) are fixed.
    assert i.cache_bytes_per_token == 4 * 4 * 2 * 2048 * 2
    states = 17 * 4 * (16 * 96 * 192 * 4 + 3 * 6144 * 2)
    assert i.state_bytes == states


def test_train_flops_formula():
    _, i = info("1B", "looped_pure_full", seq_len=4096)
    d, L = 2048, 4096
    matmul = 21 * (4 * d * d + 3 * d * 5632)
    attention = 84 * 4 * 16 * 128 * (L + 1) / 2
    assert i.forward_flops_per_token == pytest.approx(2 * matmul * 4 + 2 * d * V + attention)
    assert i.train_flops_per_token == pytest.approx(3 * i.forward_flops_per_token)
    # Linear mixers' sequence mixing does not grow with the context; attention's does.
    _, gdn_short = info("1B", "looped_pure_gdn", seq_len=1024)
    _, gdn_long = info("1B", "looped_pure_gdn", seq_len=32768)
    assert gdn_short.forward_flops_per_token == gdn_long.forward_flops_per_token
    _, full_long = info("1B", "looped_pure_full", seq_len=32768)
    assert full_long.forward_flops_per_token > i.forward_flops_per_token


def test_decode_roofline_bytes():
    recipe, _ = info("1B", "looped_pure_full")
    model = meta_model(recipe.model)
    layer_params = 21 * attention_layer(2048, 5632)
    weights = (layer_params * 4 + V * 2048) * 2  # each layer read once per loop, the head once, bf16
    kv_read = 84 * 2 * 16 * 128 * 2  # per token of context per sequence
    assert decode_step_bytes(model, 1, 1000) == weights + 1000 * kv_read
    assert decode_step_bytes(model, 8, 1000) == weights + 8 * 1000 * kv_read
    recipe, _ = info("1B", "looped_pure_gdn")
    gdn = meta_model(recipe.model)
    # a recurrent state is read and written, whatever the context
    assert decode_step_bytes(gdn, 1, 1000) == decode_step_bytes(gdn, 1, 32000)
    recipe, _ = info("1B", "looped_hybrid_gdn_dsa")
    dsa = meta_model(recipe.model)
    short, long = decode_step_bytes(dsa, 1, 2048), decode_step_bytes(dsa, 1, 32768)
    # DSA reads every indexer key (64 bf16) but K/V of 2048 selected keys only: 4 layers x 4 loops
    assert long - short == pytest.approx(4 * 4 * (32768 - 2048) * 64 * 2)


def test_model_info_cli_prints_the_table(capsys):
    from lt2.cli import main

    assert main(["model-info", str(RECIPES / "1B" / "looped_hybrid_gdn_4to1.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1,485,891,296" in out and "84 (21 layers x 4 loops)" in out
    assert "loop 0: gdn gdn gdn gdn full" in out
