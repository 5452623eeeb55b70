"""`lt2 eval ppl`: the windows score every target once, and the result equals a direct computation.

pytest tests/eval/test_perplexity.py
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lt2.config import ModelArgs
from lt2.eval.perplexity import PplArgs, evaluate_perplexity, plan_windows
from lt2.model.looped import LoopedLM


@pytest.mark.parametrize(
    ("n", "seq_len", "stride"), [(1, 4, 4), (63, 16, 16), (63, 16, 5), (500, 64, 1), (500, 64, 63), (10, 32, 8)]
)
def test_windows_score_each_target_exactly_once(n, seq_len, stride):
    scored = []
    for w in plan_windows(n, seq_len, stride):
        assert 0 <= w.skip < w.length <= seq_len
        scored += range(w.begin + w.skip, w.begin + w.length)
    assert scored == list(range(n))


@pytest.fixture
def model_and_data(tmp_path):
    from lt2.data.tokenizer import train_bpe

    texts = [f"The {w} of the play is here, act {i}." for i, w in enumerate(["king", "queen", "fool"] * 20)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    tok = train_bpe([train], 300, tmp_path / "tok")
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:6]))
    args = ModelArgs(vocab_size=tok.vocab_size, dim=32, n_layers=2, loop_count=2, n_heads=2, n_kv_heads=2,
                     head_dim=16, ffn_dim=64, max_seqlen=512)  # fmt: skip
    model = LoopedLM(args)
    model.init_weights()
    model.save_pretrained(tmp_path / "model")
    return model.eval(), tok, tmp_path


def test_matches_a_direct_computation(model_and_data):
    model, tok, root = model_and_data
    docs = [json.loads(line)["text"] for line in (root / "val.jsonl").read_text().splitlines()]
    stream = [t for ids in tok.encode_batch(docs, bos=True, eos=True) for t in ids]
    assert len(stream) < 512  # one window holds it all: the direct computation is exact
    x = torch.tensor(stream)[None]
    with torch.no_grad():
        nll = F.cross_entropy(model(x[:, :-1])[0], x[0, 1:], reduction="sum").item()
    res = evaluate_perplexity(root / "model", root / "val.jsonl", root / "tok", PplArgs(), progress=False)
    assert res.seq_len == 512 and res.tokens == len(stream) - 1 and res.documents == 6
    assert res.bytes == sum(len(d.encode()) for d in docs)
    assert math.isclose(res.nll * res.tokens, nll, rel_tol=1e-5)
    assert math.isclose(res.bits_per_byte, nll / math.log(2) / res.bytes, rel_tol=1e-5)
    assert math.isclose(res.ppl, math.exp(nll / res.tokens), rel_tol=1e-5)


def test_window_layouts_score_the_same_targets_with_different_context(model_and_data):
    _, _, root = model_and_data
    full = evaluate_perplexity(root / "model", root / "val.jsonl", root / "tok", PplArgs(), progress=False)
    packed = evaluate_perplexity(root / "model", root / "val.jsonl", root / "tok", PplArgs(seq_len=16), progress=False)
    sliding = evaluate_perplexity(
        root / "model", root / "val.jsonl", root / "tok", PplArgs(seq_len=16, stride=4, batch_size=3), progress=False
    )
    assert full.tokens == packed.tokens == sliding.tokens
    assert packed.nll != full.nll and sliding.nll != packed.nll


def test_bad_arguments_are_named(model_and_data):
    _, _, root = model_and_data
    with pytest.raises(ValueError, match="stride"):
        PplArgs(seq_len=8, stride=9)
    with pytest.raises(ValueError, match="max_seqlen"):
        evaluate_perplexity(root / "model", root / "val.jsonl", root / "tok", PplArgs(seq_len=1024), progress=False)


def test_doc_mask_keeps_documents_apart(model_and_data):
    model, tok, root = model_and_data
    docs = [json.loads(line)["text"] for line in (root / "val.jsonl").read_text().splitlines()]
    x = torch.tensor([t for ids in tok.encode_batch(docs, bos=True, eos=True) for t in ids])[None]
    with torch.no_grad():
        logits = model(x[:, :-1], x[:, :-1] == tok.bos_id)[0]
    nll = F.cross_entropy(logits, x[0, 1:], reduction="sum").item()
    args = PplArgs(doc_mask=True)
    masked = evaluate_perplexity(root / "model", root / "val.jsonl", root / "tok", args, progress=False)
    plain = evaluate_perplexity(root / "model", root / "val.jsonl", root / "tok", PplArgs(), progress=False)
    assert math.isclose(masked.nll * masked.tokens, nll, rel_tol=1e-5)
    assert not math.isclose(masked.nll, plain.nll, rel_tol=1e-6)
