"""The lm-eval model `lt2`: known-answer loglikelihoods, batch invariance per layout, rolling scores,
generation equal to `lt2 generate` and cut at stop strings, and bad inputs refused before any loading.

pytest tests/eval/test_harness.py
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance

from lt2.eval.harness import LT2LM
from lt2.infer.generate import generate
from lt2.infer.sampling import SamplingArgs

TEXTS = [f"The {w} of the play is here, act {i}." for i, w in enumerate(["king", "queen", "fool"] * 20)]


def lm_for(root, tokenizer_dir, **kw) -> LT2LM:
    return LT2LM(pretrained=str(root), tokenizer=str(tokenizer_dir), dtype="float32", device="cpu", **kw)


def ll_requests(pairs):
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


CHOICES = [
    ("The king of the play", " is here"),
    ("The king of the play", " is gone, act 3."),
    ("Question: who is the fool?\nAnswer:", " the queen"),
    ("Question: who is the fool?\nAnswer:", " the fool of the play is here, act 9 and the king of the play"),
    ("", "The queen"),
]


@pytest.mark.parametrize("pattern", ["full", "random:1:1"])
def test_known_answer_loglikelihoods(tmp_path, tokenizer_dir, make_model, pattern):
    """Each score is the hand-summed log-softmax of one unpadded forward over [bos] context continuation
    (for a random layout: of its vote-averaged logits, as `forward` gives them in eval mode)."""
    model = make_model(tmp_path, pattern)
    lm = lm_for(tmp_path, tokenizer_dir, batch_size=3)
    tok = lm.tok
    got = lm.loglikelihood(ll_requests(CHOICES), disable_tqdm=True)
    for (ctx, cont), (logp, greedy) in zip(CHOICES, got, strict=True):
        whole = tok.encode(ctx + cont)
        n_ctx = len(tok.encode(ctx)) if ctx else 0
        seq = [tok.bos_id, *whole]
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0].double(), -1)
        want = sum(lp[i - 1, seq[i]].item() for i in range(1 + n_ctx, len(seq)))
        assert math.isclose(logp, want, rel_tol=1e-5, abs_tol=1e-5)
        assert greedy == all(lp[i - 1].argmax().item() == seq[i] for i in range(1 + n_ctx, len(seq)))


@pytest.mark.parametrize("pattern", ["full", "gdn", "swa=4", "random:1:1"])
def test_batches_of_mixed_lengths_score_as_alone(tmp_path, tokenizer_dir, make_model, pattern):
    """No state, conv or KV crosses rows or padding: alone == inside batches of 2 and 5 (fp32, 1e-5)."""
    make_model(tmp_path, pattern)
    alone = lm_for(tmp_path, tokenizer_dir, batch_size=1).loglikelihood(ll_requests(CHOICES), disable_tqdm=True)
    for batch in (2, 5):
        batched = lm_for(tmp_path, tokenizer_dir, batch_size=batch).loglikelihood(
            ll_requests(CHOICES), disable_tqdm=True
        )
        for (a, ga), (b, gb) in zip(alone, batched, strict=True):
            assert abs(a - b) <= 1e-5 * max(1.0, abs(a)) and ga == gb


def test_long_contexts_lose_their_start_and_keep_the_continuation(tmp_path, tokenizer_dir, make_model):
    model = make_model(tmp_path, "full")
    lm = lm_for(tmp_path, tokenizer_dir, max_length=12)
    ctx, cont = " ".join(TEXTS[:4]), " act 2."
    (logp, _), = lm.loglikelihood(ll_requests([(ctx, cont)]), disable_tqdm=True)  # fmt: skip
    seq = [lm.tok.bos_id, *lm.tok.encode(ctx + cont)][-13:]
    n = len(lm.tok.encode(ctx + cont)) - len(lm.tok.encode(ctx))
    with torch.no_grad():
        lp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0], -1)
    assert math.isclose(logp, sum(lp[i - 1, seq[i]].item() for i in range(13 - n, 13)), rel_tol=1e-5)


def test_rolling_loglikelihood_is_the_document_nll(tmp_path, tokenizer_dir, make_model):
    model = make_model(tmp_path, "gdn")
    text = " ".join(TEXTS[:3])
    lm = lm_for(tmp_path, tokenizer_dir)
    seq = [lm.tok.bos_id, *lm.tok_encode(text)]
    with torch.no_grad():
        lp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0], -1)
    want = sum(lp[i - 1, seq[i]].item() for i in range(1, len(seq)))
    whole = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    assert math.isclose(whole[0], want, rel_tol=1e-5)
    windows = lm_for(tmp_path, tokenizer_dir, max_length=8).loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True
    )
    assert windows[0] < 0 and not math.isclose(windows[0], want, rel_tol=1e-3)  # less context per token


def test_generate_until_matches_lt2_generate_and_stops(tmp_path, tokenizer_dir, make_model):
    model = make_model(tmp_path, "interleave:1:1:gdn:full")
    lm = lm_for(tmp_path, tokenizer_dir, batch_size=2)
    prompts = ["The king of", "Question: who is the fool?\nAnswer:", "act"]
    free = generate(model, lm.tok, prompts, SamplingArgs(max_new_tokens=12))
    reqs = [Instance("generate_until", {}, (p, {"until": [], "max_gen_toks": 12}), i) for i, p in enumerate(prompts)]
    assert lm.generate_until(reqs, disable_tqdm=True) == free
    # a stop string taken from the free text itself: the output is cut right before it
    text = free[0]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop and stop in text
    reqs = [Instance("generate_until", {}, (prompts[0], {"until": [stop], "max_gen_toks": 12}), 0)]
    assert lm.generate_until(reqs, disable_tqdm=True) == [text[: text.find(stop)]]
    with pytest.raises(ValueError, match="greedily"):
        lm.generate_until(
            [Instance("generate_until", {}, ("x", {"until": [], "do_sample": True}), 0)], disable_tqdm=True
        )


def test_bad_inputs_fail_before_loading(tmp_path, tokenizer_dir, make_model):
    with pytest.raises(ValueError, match=r"model\.safetensors is missing"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
        lm_for(tmp_path / "empty", tokenizer_dir)
    make_model(tmp_path / "big", "full", vocab=1000)
    with pytest.raises(ValueError, match="vocabulary of 1000"):
        lm_for(tmp_path / "big", tokenizer_dir)
    make_model(tmp_path / "small", "full", vocab=200)
    with pytest.raises(ValueError, match="vocabulary of 200"):
        lm_for(tmp_path / "small", tokenizer_dir)
    with pytest.raises(ValueError, match="dtype"):
        LT2LM(pretrained=str(tmp_path / "small"), tokenizer=str(tokenizer_dir), dtype="int8")
    with pytest.raises(ValueError, match="batch_size"):
        LT2LM(pretrained=str(tmp_path / "small"), tokenizer=str(tokenizer_dir), batch_size="auto")
