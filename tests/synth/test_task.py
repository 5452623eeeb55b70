"""The pointer-swap generator (lt2.synth.task): tokens agree with a plain-Python run of the program they spell,
pointers stay distinct, swaps are transpositions, the no-tracking shortcut scores ~0.6, seeds reproduce.

Run: pytest tests/synth/test_task.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lt2.synth.task import IGNORE, N_VARS, VAR_NAMES, Vocab, max_length, program_rng, render, sample_programs

VOCAB = Vocab(64)


def run_program(tokens: list[int], vocab: Vocab) -> tuple[int, list[tuple[int, int]]]:
    """Parse rendered tokens as the program they spell and execute it with plain Python.

    Returns the final assert's answer and, for every reveal, (its token index, the address it must state).
    """
    names = vocab.names()
    words = [names[t] for t in tokens]
    assert words[:4] == ["<bos>", "bits", "=", "["], words[:4]
    i, bits = 4, {}
    while words[i] != "]":
        bits[int(words[i][1:])] = int(words[i + 1])
        i += 2
    assert words[i + 1] == "⏎"
    i += 2
    pointers, reveals = {}, []
    while True:
        line_end = words.index("⏎", i) if "⏎" in words[i:] else len(words)
        line = words[i:line_end]
        if line[0] == "assert" and line[1] == "bits":  # assert bits [ v ] == answer
            assert line[2] == "[" and line[4] == "]" and line[5] == "==", line
            return bits[pointers[line[3]]], reveals
        if line[0] == "assert":  # assert x == @addr
            reveals.append((i + 3, pointers[line[1]]))
        elif len(line) == 3 and line[1] == "=":  # x = @addr
            pointers[line[0]] = int(line[2][1:])
        else:  # x y  means  x, y = y, x
            x, y = line
            pointers[x], pointers[y] = pointers[y], pointers[x]
        i = line_end + 1


@pytest.mark.parametrize("n, m", [(8, 8), (16, 16), (5, 40), (33, 7)], ids=lambda v: str(v))
def test_tokens_run_as_a_program_give_the_ground_truth(n, m):
    programs = sample_programs(program_rng(1, n, m), 40, n, m, reveals=True, strict_share=0.2)
    batch = render(programs, VOCAB)
    assert (programs.spacing == 0).any() and (programs.spacing > 0).any()
    for b in range(40):
        end = int(batch.answer_index[b]) + 1
        tokens = [*batch.inputs[b, :end].tolist(), int(batch.answer[b])]
        answer, reveals = run_program(tokens, VOCAB)
        assert VOCAB.BIT0 + answer == batch.answer[b] == VOCAB.BIT0 + programs.answer[b]
        # the targets are exactly the reveal addresses and the final bit, each at the token before it
        targets = {int(j): int(t) for j, t in enumerate(batch.targets[b]) if t != IGNORE}
        expected = {j - 1: VOCAB.ADDR0 + addr for j, addr in reveals} | {end - 1: VOCAB.BIT0 + answer}
        assert targets == expected
        rest = batch.inputs[b, end:]  # a shorter row: the answer as input (never a target), then padding
        assert rest.numel() == 0 or (rest[0] == batch.answer[b] and (rest[1:] == VOCAB.PAD).all())


def test_pointers_distinct_and_swaps_are_transpositions():
    n, m = 50, 12
    p = sample_programs(program_rng(2), 300, n, m, reveals=False, strict_share=0.0)
    assert (p.spacing == 0).all()
    assert ((p.init >= 0) & (p.init < m)).all()
    for state in p.states.transpose(1, 0, 2):  # [B, 5] at every point of the program
        assert all(len(set(row)) == N_VARS for row in state.tolist())
    x, y = p.swaps[..., 0], p.swaps[..., 1]
    assert (x != y).all() and set(np.unique(p.swaps)) == set(range(N_VARS))
    rows = np.arange(300)
    for i in range(n):
        before, after = p.states[:, i], p.states[:, i + 1]
        assert (after[rows, x[:, i]] == before[rows, y[:, i]]).all()
        assert (after[rows, y[:, i]] == before[rows, x[:, i]]).all()
        untouched = np.ones_like(before, dtype=bool)
        untouched[rows, x[:, i]] = untouched[rows, y[:, i]] = False
        assert (after[untouched] == before[untouched]).all()


def test_shortcut_scores_about_six_in_ten():
    """Bit at v's initial address: right when v is home (~1/5 after many swaps) or by luck (1/2 otherwise)."""
    p = sample_programs(program_rng(3), 10_000, 16, 16, reveals=False, strict_share=1.0)
    accuracy = (p.shortcut == p.answer).mean()
    assert abs(accuracy - 0.6) < 0.02, accuracy  # std of the estimate: 0.005
    assert abs(p.answer.mean() - 0.5) < 0.02  # fair bits: chance is 0.5


def test_majority_of_the_pointed_to_bits_scores_about_seven_in_ten():
    """The best no-tracking baseline: the answer is one of the five pointed-to bits, so their majority is right
    with probability E[max(k, 5 - k)] / 5 = 110/160 for k ~ Binomial(5, 1/2), at every program length."""
    for n in (8, 64):
        p = sample_programs(program_rng(4, n), 10_000, n, n, reveals=False, strict_share=1.0)
        accuracy = (p.majority == p.answer).mean()
        assert abs(accuracy - 110 / 160) < 0.02, (n, accuracy)


def test_padding_to_the_longest_program_keeps_tokens_and_targets():
    p = sample_programs(program_rng(6), 64, 8, 8, reveals=True, strict_share=0.0)
    p.spacing[:] = 1  # a reveal after every line: the longest programs
    tight, padded = render(p, VOCAB), render(p, VOCAB, pad_to=max_length(8, 8) + 3)
    assert tight.inputs.shape[1] == max_length(8, 8) - 1 and padded.inputs.shape[1] == max_length(8, 8) + 2
    L = tight.inputs.shape[1]
    assert torch.equal(padded.inputs[:, :L], tight.inputs) and torch.equal(padded.inputs[:, L], tight.answer)
    assert (padded.inputs[:, L + 1 :] == VOCAB.PAD).all()  # the answer as an input (never a target), then pads
    assert torch.equal(padded.targets[:, :L], tight.targets) and (padded.targets[:, L:] == IGNORE).all()
    with pytest.raises(ValueError, match="pad_to"):
        render(p, VOCAB, pad_to=L)


def test_seeds_reproduce_and_keys_differ():
    def draw(*keys):
        return render(sample_programs(program_rng(*keys), 16, 8, 8, True, 0.2), VOCAB)

    a, b, c = draw(7, 0, 3), draw(7, 0, 3), draw(7, 0, 4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs[:, :40], c.inputs[:, :40])


def test_reveal_spacing_and_strict_share():
    p = sample_programs(program_rng(4), 4000, 16, 16, reveals=True, strict_share=0.2)
    assert abs((p.spacing == 0).mean() - 0.2) < 0.03
    assert set(np.unique(p.spacing)) == {0, 1, 2, 4, 8, 16}
    reveals = p.has_reveal()
    assert (reveals.sum(1) == np.where(p.spacing > 0, 16 // np.maximum(p.spacing, 1), 0)).all()
    all_targets = render(p, VOCAB, loss_tokens="all")
    assert ((all_targets.targets != IGNORE).sum(1) == all_targets.answer_index + 1).all()  # every real next token


def test_vocabulary_is_documented_and_decodes():
    names = VOCAB.names()
    assert len(names) == VOCAB.size == 16 + 64
    assert names[VOCAB.BIT0 : VOCAB.BIT0 + 2] == ["0", "1"] and names[VOCAB.VAR0 : VOCAB.ADDR0] == list(VAR_NAMES)
    batch = render(sample_programs(program_rng(5), 1, 2, 6, False, 0.0), VOCAB)
    text = VOCAB.decode(batch.inputs[0].tolist())
    assert text.startswith("<bos> bits = [ @0 ") and "assert bits [" in text


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0, "m": 8}, "n >= 1"), ({"n": 4, "m": 4}, "m >= 5"), ({"strict_share": 1.5}, "strict_share")],
)
def test_bad_sizes_raise(kwargs, match):
    args = {"n": 4, "m": 8, "strict_share": 0.2, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_programs(program_rng(0), 2, args["n"], args["m"], True, args["strict_share"])


def test_render_checks_vocabulary_and_loss_mode():
    p = sample_programs(program_rng(0), 2, 4, 70, True, 0.2)
    with pytest.raises(ValueError, match="max_m=64"):
        render(p, VOCAB)
    with pytest.raises(ValueError, match="valid: answers, all"):
        render(sample_programs(program_rng(0), 2, 4, 8, True, 0.2), VOCAB, loss_tokens="bits")
