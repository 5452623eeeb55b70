"""The chunked full-vocabulary KL equals the naive KL in value and gradients without forming [N, V] at once.

Run: pytest tests/distill/test_losses.py
"""

from __future__ import annotations

import pytest
import torch

import lt2.distill.losses as losses
from lt2.distill.losses import alignment_mse, chunked_kl, naive_kl
from lt2.testing import assert_close


@pytest.mark.parametrize("n, chunk", [(37, 8), (64, 64), (5, 100)], ids=["N37-chunk8", "N64-one-chunk", "N5-chunk100"])
def test_chunked_kl_equals_naive_kl(n, chunk):
    gen = torch.Generator().manual_seed(n)
    V, C, Ct = 53, 12, 9  # the teacher's width may differ from the student's
    h = torch.randn(n, C, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, C, generator=gen, dtype=torch.float64, requires_grad=True)
    h_t, w_t = (
        torch.randn(n, Ct, generator=gen, dtype=torch.float64),
        torch.randn(V, Ct, generator=gen, dtype=torch.float64),
    )
    ours = chunked_kl(h, w, h_t, w_t, chunk)
    (g_h, g_w) = torch.autograd.grad(3.0 * ours, (h, w))
    ref = naive_kl(h @ w.T, h_t @ w_t.T)
    (r_h, r_w) = torch.autograd.grad(3.0 * ref, (h, w))
    assert_close("kl", ours, ref.float(), rtol=1e-6, atol=1e-7)
    assert_close("grad h", g_h, r_h, rtol=1e-6, atol=1e-9)
    assert_close("grad w", g_w, r_w, rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        assert_close("no-grad kl", chunked_kl(h, w, h_t, w_t, chunk), ref.float(), rtol=1e-6, atol=1e-7)


def test_no_chunk_holds_more_than_chunk_tokens_of_logits(monkeypatch):
    seen = []
    original = losses.chunk_kl_and_grad

    def spy(h, weight, h_t, weight_t):
        seen.append(h.shape[0])
        return original(h, weight, h_t, weight_t)

    monkeypatch.setattr(losses, "chunk_kl_and_grad", spy)
    h = torch.randn(50, 8, requires_grad=True)
    chunked_kl(h, torch.randn(40, 8), torch.randn(50, 8), torch.randn(40, 8), chunk=16).backward()
    assert seen == [16, 16, 16, 2]


def test_kl_of_identical_models_is_zero_and_shapes_are_checked():
    h, w = torch.randn(6, 4), torch.randn(11, 4)
    assert chunked_kl(h, w, h, w, 4).abs().item() < 1e-6
    with pytest.raises(ValueError, match="vocabularies differ: 11 vs 10"):
        chunked_kl(h, w, h, torch.randn(10, 4))
    with pytest.raises(ValueError, match="same N"):
        chunked_kl(h, w, h[:5], w)


def test_alignment_mse_averages_over_loop_layer_pairs():
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    assert alignment_mse([a, b], [b, b]).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one target per output"):
        alignment_mse([a], [])
