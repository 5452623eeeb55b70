"""The chunked cross-entropy equals F.cross_entropy on full fp32 logits, in value and in gradients w.r.t. the
hidden states and the head weight, for any chunk size; CausalLMLoss agrees with LoopedLM.forward.

    pytest tests/train/test_loss.py
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lt2.config import ModelArgs
from lt2.model.looped import LoopedLM
from lt2.testing import assert_close
from lt2.train.loss import CausalLMLoss, chunked_cross_entropy, token_losses


def _inputs(n: int, c: int = 24, v: int = 97, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, c, generator=g, requires_grad=True)
    w = (torch.randn(v, c, generator=g) * 0.3).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    return h, w, t


@pytest.mark.parametrize("n", [1, 63, 64, 200], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000], ids=lambda c: f"chunk{c}")
def test_matches_full_logits_cross_entropy(n, chunk):
    h, w, t = _inputs(n)
    ref = F.cross_entropy((h @ w.t()).float(), t)
    g_ref = torch.autograd.grad(ref, (h, w))
    got = chunked_cross_entropy(h, w, t, chunk)
    g_got = torch.autograd.grad(got, (h, w))
    assert_close("loss", got, ref, rtol=1e-6, atol=1e-6)
    assert_close("dh", g_got[0], g_ref[0], rtol=1e-5, atol=1e-7)
    assert_close("dW", g_got[1], g_ref[1], rtol=1e-5, atol=1e-7)


def test_scales_by_the_incoming_gradient_and_needs_no_grad_to_score():
    h, w, t = _inputs(50)
    (3.5 * chunked_cross_entropy(h, w, t, 8)).backward()
    dh, dw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    (3.5 * F.cross_entropy(h @ w.t(), t)).backward()
    assert_close("dh", dh, h.grad, rtol=1e-5)
    assert_close("dW", dw, w.grad, rtol=1e-5)
    with torch.no_grad():
        assert_close("no-grad", chunked_cross_entropy(h, w, t, 8), F.cross_entropy(h @ w.t(), t), rtol=1e-6)
    assert_close("per token", token_losses(h, w, t, 9), F.cross_entropy(h @ w.t(), t, reduction="none"), rtol=1e-6)


def test_rejects_bad_shapes_and_chunks():
    h, w, t = _inputs(10)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunked_cross_entropy(h, w, t, 0)
    with pytest.raises(ValueError, match=r"targets \[N\]"):
        chunked_cross_entropy(h, w, t[:5], 4)


def _tiny(pattern: str = "full") -> LoopedLM:
    args = ModelArgs(vocab_size=61, dim=32, n_layers=2, loop_count=2, n_heads=4, n_kv_heads=4, head_dim=8, ffn_dim=48,
                     max_seqlen=64, window=8, pattern=pattern, use_residual=True)  # fmt: skip
    model = LoopedLM(args)
    model.init_weights()
    with torch.no_grad():
        model.residual_gate.normal_(0, 0.1)  # non-zero, so the gate takes part in the comparison
    return model


def test_model_loss_equals_forward_logits_loss_with_documents():
    torch.manual_seed(0)
    lm = _tiny()
    tokens = torch.randint(0, 61, (3, 33))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    doc_start = torch.rand(3, 32) < 0.1
    ref = F.cross_entropy(lm(inputs, doc_start).flatten(0, 1).float(), targets.flatten())
    ref_grads = torch.autograd.grad(ref, list(lm.parameters()))
    for chunk in (0, 5, 4096):  # 0: the plain full-logits head
        loss = CausalLMLoss(lm, chunk)(inputs, targets, doc_start)
        grads = torch.autograd.grad(loss, list(lm.parameters()))
        assert_close(f"loss chunk={chunk}", loss, ref, rtol=1e-6)
        for (name, _), g, r in zip(lm.named_parameters(), grads, ref_grads):
            assert_close(f"{name} chunk={chunk}", g, r, rtol=1e-5, atol=1e-7)
    per_token = CausalLMLoss(lm, 7)(inputs, targets, doc_start, reduction="none")
    assert per_token.shape == (3, 32)
    assert_close("mean of per-token", per_token.mean(), ref, rtol=1e-6)


def test_random_layout_is_scored_by_its_vote_in_eval_mode():
    torch.manual_seed(0)
    lm = _tiny("random:3:1")
    tokens = torch.randint(0, 61, (2, 17))
    loss = CausalLMLoss(lm, 8).eval()
    lm.eval()
    ref = F.cross_entropy(lm(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
    with torch.no_grad():
        assert_close("vote", loss(tokens[:, :-1], tokens[:, 1:]), ref, rtol=1e-6)
    assert int(lm.layout_step) == 0  # scoring draws no training placement
