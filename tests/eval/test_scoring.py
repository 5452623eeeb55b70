"""The loglikelihood path's economies leave every score as it was: logits only at the scored positions,
token-budgeted batches and one host transfer per batch give the per-request loglikelihoods and greedy flags
of the full computation (head and log-softmax over every position of a right-padded batch, as before).

pytest tests/eval/test_scoring.py
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance

from lt2.eval.harness import LT2LM


def lm_for(root, tokenizer_dir, **kw) -> LT2LM:
    return LT2LM(pretrained=str(root), tokenizer=str(tokenizer_dir), dtype="float32", device="cpu", **kw)


@torch.no_grad()
def full_scores(lm: LT2LM, pairs) -> list[tuple[float, bool]]:
    """The former scoring: logits [B, T, V] of one right-padded forward, per-row log-softmax of the slice
    that predicts the continuation, two host syncs per request."""
    rows = [lm._sequence(ctx, cont) for ctx, cont in pairs]
    width = max(len(ids) for ids, _ in rows)
    tokens = torch.full((len(rows), width), lm.tok.pad_id, dtype=torch.long)
    for r, (ids, _) in enumerate(rows):
        tokens[r, : len(ids)] = torch.tensor(ids)
    logits = lm.model(tokens)
    out = []
    for r, ((ids, n), (_, cont)) in enumerate(zip(rows, pairs, strict=True)):
        logp = F.log_softmax(logits[r, len(ids) - n : len(ids)].float(), dim=-1)
        target = torch.tensor(cont[-n:])
        out.append((float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())))
    return out


@torch.no_grad()
def random_pairs(lm: LT2LM, seed: int, n: int = 14) -> list[tuple[list[int], list[int]]]:
    """Fresh (context, continuation) id pairs of mixed lengths, shared contexts among them; every third
    continuation is the model's own greedy choice, so that both greedy flags occur."""
    rng = random.Random(seed)
    vocab = lm.tok.vocab_size
    pairs, contexts = [], []
    for i in range(n):
        if contexts and rng.random() < 0.4:
            ctx = rng.choice(contexts)  # a multiple-choice context with several continuations
        else:
            ctx = [rng.randrange(3, vocab) for _ in range(rng.randrange(0, 30))]
            contexts.append(ctx)
        if i % 3 == 0:
            cont, seq = [], [lm.tok.bos_id, *ctx]
            for _ in range(rng.randrange(1, 4)):
                cont.append(int(lm.model(torch.tensor([seq]))[0, -1].argmax()))
                seq.append(cont[-1])
        else:
            cont = [rng.randrange(3, vocab) for _ in range(rng.randrange(1, 9))]
        pairs.append((ctx, cont))
    return pairs


PATTERNS = ["full", "gdn", "interleave:1:1:gdn:full", "swa=4", "random:1:1"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scoring_at_the_scored_positions_equals_the_full_computation(
    tmp_path, tokenizer_dir, make_model, pattern, seed
):
    make_model(tmp_path, pattern)
    lm = lm_for(tmp_path, tokenizer_dir)
    pairs = random_pairs(lm, seed)
    want = full_scores(lm, pairs)
    got = lm.score_batch(pairs)
    torch.testing.assert_close([s for s, _ in got], [s for s, _ in want], rtol=1e-6, atol=1e-5)
    assert [g for _, g in got] == [g for _, g in want]
    assert any(g for _, g in want) and not all(g for _, g in want)  # both flags are exercised


@pytest.mark.parametrize("pattern", ["interleave:1:1:gdn:full", "random:1:1"])
def test_token_budgeted_batches_score_as_the_full_computation_alone(tmp_path, tokenizer_dir, make_model, pattern):
    """Through lm-eval's entry point, with batches cut by rows and by padded positions: each request's score
    equals the former full computation of it alone."""
    make_model(tmp_path, pattern)
    lm = lm_for(tmp_path, tokenizer_dir, batch_size=6, max_batch_tokens=60)
    pairs = random_pairs(lm, seed=2, n=20)
    want = [full_scores(lm, [p])[0] for p in pairs]
    got = lm._loglikelihood_tokens([(None, c, x) for c, x in pairs], disable_tqdm=True)
    torch.testing.assert_close([s for s, _ in got], [s for s, _ in want], rtol=1e-6, atol=1e-5)
    assert [g for _, g in got] == [g for _, g in want]
    stats = lm.scoring_stats()
    assert stats["sequences"] == len(pairs) and stats["batches"] >= 4  # 20 rows, at most 6 per batch
    assert stats["host_syncs"] == stats["batches"]


def test_the_head_runs_on_the_scored_positions_only(tmp_path, tokenizer_dir, make_model):
    """Counts the rows the output head sees: the continuation tokens, not rows x padded width."""
    make_model(tmp_path, "interleave:1:1:gdn:full")
    lm = lm_for(tmp_path, tokenizer_dir, batch_size=4)
    pairs = random_pairs(lm, seed=3, n=9)
    rows, head = [], lm.model.output
    lm.model.output = lambda h: rows.append(h.shape[:-1].numel()) or head(h)
    lm._loglikelihood_tokens([(None, c, x) for c, x in pairs], disable_tqdm=True)
    scored = sum(len(x) for _, x in pairs)
    stats = lm.scoring_stats()
    assert sum(rows) == scored == stats["scored_tokens"] == stats["head_rows"]
    assert stats["positions"] > stats["real_tokens"] > scored  # the stack still runs every position
    assert stats["padding_fraction"] == pytest.approx(1 - stats["real_tokens"] / stats["positions"])


def test_batches_respect_rows_and_padded_positions(tmp_path, tokenizer_dir, make_model):
    make_model(tmp_path, "full")
    lm = lm_for(tmp_path, tokenizer_dir, batch_size=4, max_batch_tokens=20)
    lengths = [12, 9, 5, 5, 4, 3, 3, 3, 2, 2, 2, 30]  # sequence = bos + ctx + cont - 1 = len(ctx) + len(cont)
    reqs = [(None, [5] * (n - 1), [6]) for n in lengths]
    batches = lm.batches(reqs)
    assert [len(b) for b in batches] == [1, 2, 4, 4, 1]  # 12 | 9 5 (2 x 9) | 5 4 3 3 (4 x 5) | 3 2 2 2 | 30 alone
    assert [r for b in batches for r in b] == reqs
    assert [len(b) for b in lm_for(tmp_path, tokenizer_dir, batch_size=4).batches(reqs)] == [4, 4, 4]
    with pytest.raises(ValueError, match="max_batch_tokens"):
        lm_for(tmp_path, tokenizer_dir, max_batch_tokens=-1)


def test_stats_count_contexts_and_what_sharing_them_would_save(tmp_path, tokenizer_dir, make_model):
    make_model(tmp_path, "full")
    lm = lm_for(tmp_path, tokenizer_dir)
    reqs = [Instance("loglikelihood", {}, ("The king of the play", c), i) for i, c in enumerate([" is", " was"])]
    lm.loglikelihood(reqs, disable_tqdm=True)
    stats = lm.scoring_stats()
    assert stats["contexts"] == 1 and stats["sequences"] == 2
    assert stats["prefix_shared_tokens"] < stats["real_tokens"]


def test_batch_time_fit_recovers_a_known_line():
    from lt2.eval.harness import batch_time_fit

    log = [(4, 100, 9.0)] + [(rows, width, 0.5 + 2e-3 * rows * width) for rows, width in [(2, 10), (4, 30), (8, 50)]]
    fit = batch_time_fit(log)  # the first forward (compilation) is left out of the line
    assert fit["first_forward_s"] == 9.0 and fit["scoring_s"] == pytest.approx(9.0 + 1.5 + 2e-3 * 540)
    assert fit["fixed_s_per_forward"] == pytest.approx(0.5) and fit["s_per_1k_positions"] == pytest.approx(2.0)
    assert batch_time_fit([]) == {}
