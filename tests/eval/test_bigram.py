"""The bigram baseline: Kneser-Ney probabilities are proper distributions, sparse counts equal dense ones, and
`lt2 eval bigram` scores exactly the targets that `lt2 eval ppl` scores.

Run: pytest tests/eval/test_bigram.py
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from lt2.eval.bigram import BigramCounts, KneserNeyBigram, bigram_counts, evaluate_bigram
from lt2.eval.perplexity import build_stream, read_documents


class CharTokenizer:
    """Bytes as tokens, BOS=256, EOS=257: enough to count pairs by hand."""

    vocab_size = 258
    bos_id, eos_id = 256, 257

    def encode_batch(self, texts, bos=False, eos=False):
        return [([256] if bos else []) + list(t.encode()) + ([257] if eos else []) for t in texts]


def write_docs(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def test_counts_frame_documents_and_match_a_hand_count(tmp_path):
    files = [write_docs(tmp_path / "a.jsonl", ["ab", "b"]), write_docs(tmp_path / "b.jsonl", ["ab"])]
    counts = bigram_counts(files, CharTokenizer(), batch=1, flush_pairs=2).dense()  # several flushes
    a, b, bos, eos = ord("a"), ord("b"), 256, 257
    expected = {(bos, a): 2, (a, b): 2, (b, eos): 3, (bos, b): 1}
    assert counts.sum() == sum(expected.values())
    for (p, n), c in expected.items():
        assert counts[p, n] == c


def test_kneser_ney_rows_are_distributions_and_seen_pairs_beat_unseen():
    rng = np.random.default_rng(0)
    V = 12
    ids = rng.integers(0, V - 2, size=(1, 500))  # tokens V-2, V-1 never occur: unseen contexts and targets
    counts = BigramCounts.from_ids(V, [ids[0, :-1] * V + ids[0, 1:]])
    model = KneserNeyBigram.fit(counts)
    prev = np.repeat(np.arange(V), V)
    nxt = np.tile(np.arange(V), V)
    p = np.exp(model.log_prob(prev, nxt)).reshape(V, V)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    assert (p > 0).all()
    dense = counts.dense()
    # the most frequent successor of a context is its most probable next token
    for v in range(V - 2):
        assert p[v].argmax() == dense[v].argmax()
    with pytest.raises(ValueError, match="discount"):
        KneserNeyBigram.fit(counts, discount=1.5)


def test_scores_the_stream_that_eval_ppl_scores(tmp_path):
    train = write_docs(tmp_path / "train.chunk.00.jsonl", ["abab", "ba", "abba"] * 20)
    val = write_docs(tmp_path / "val.jsonl", ["abba", "ab", "ba"])
    tok = CharTokenizer()
    stream, used, nbytes = build_stream(read_documents(val, "text"), tok, max_tokens=None)
    model = KneserNeyBigram.fit(bigram_counts([train], tok))
    nll, n = model.score(stream)
    assert n == len(stream) - 1  # every target after the first, as in lt2 eval ppl
    by_hand = -sum(model.log_prob(np.array([a]), np.array([b]))[0] for a, b in itertools.pairwise(stream))
    assert nll == pytest.approx(by_hand)
    assert math.exp(nll / n) < 8  # a four-symbol language (a, b, BOS, EOS): far better than uniform over 258
    assert used == 3 and nbytes == 8


def test_evaluate_bigram_on_the_real_tokenizer(tmp_path, shared_data):
    """The real BPE pipeline on real text: counted on one shard, scored on held-out documents."""
    from lt2.data.tokenizer import train_bpe

    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()
    docs = [d for d in text.split("\n\n") if d.strip()][:500]  # speeches as documents
    train = write_docs(tmp_path / "w.chunk.00.jsonl", docs[:400])
    val = write_docs(tmp_path / "w.val.jsonl", docs[400:460])
    train_bpe([train], 300, tmp_path / "tok")
    res = evaluate_bigram([train], val, tmp_path / "tok", max_tokens=2000)
    assert res.tokens >= 2000 and res.train_tokens > 10 * res.tokens
    assert 1 < res.ppl < 300  # better than uniform over the vocabulary
