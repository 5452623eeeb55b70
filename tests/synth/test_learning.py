"""Learning sanity of the synthetic backbone: the tiny budget's Looped Transformer, trained through the
curriculum's own step (loss mask, AdamW, clipping, schedule), learns to recall a bit of the task's bit array
by its address on fresh programs. This is the last hop of every program's answer; a broken position
encoding, causal mask or target alignment keeps it at chance.

The task's answer itself (variable -> address -> bit, then tracking) is not learned at CPU scale: see the
comment of config/synth/tiny.yaml for the measured curves.

Run: pytest tests/synth/test_learning.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lt2.synth.curriculum import Curriculum, load_synth_args
from lt2.synth.task import IGNORE, TokenBatch, Vocab

M = 8  # addresses, as in the first stage (n = m = 8)


def recall_batch(rng: np.random.Generator, vocab: Vocab, size: int) -> TokenBatch:
    """`<bos> bits = [ @0 b0 ... @7 b7 ] ⏎ assert bits [ @k ] == b_k`: the task's bit array (its tokens and
    layout) and its final query with an address in place of the variable; the bit is the only target."""
    V = vocab
    bits = rng.integers(0, 2, (size, M))
    k = rng.integers(0, M, size)
    pairs = np.stack([V.ADDR0 + np.arange(M)[None].repeat(size, 0), V.BIT0 + bits], -1).reshape(size, 2 * M)
    head = np.array([[V.BOS, V.BITS, V.EQ, V.LBR]]).repeat(size, 0)
    query = np.stack([np.full(size, V.RBR), np.full(size, V.NL), np.full(size, V.ASSERT), np.full(size, V.BITS),
                      np.full(size, V.LBR), V.ADDR0 + k, np.full(size, V.RBR), np.full(size, V.EQEQ)], 1)  # fmt: skip
    answer = V.BIT0 + bits[np.arange(size), k]
    inputs = torch.from_numpy(np.concatenate([head, pairs, query], 1))
    targets = torch.full_like(inputs, IGNORE)
    targets[:, -1] = torch.from_numpy(answer)
    index = torch.full((size,), inputs.shape[1] - 1)
    return TokenBatch(inputs, targets, index, torch.from_numpy(answer))


def test_tiny_transformer_learns_recall_by_address(tmp_path):
    # measured: held-out accuracy 1.0 after 200 steps with these seeds; eight data/init seed pairs tried
    # reach 0.96-1.0 by 600 steps; the test takes 11-40 s on one core (the latter beside other jobs)
    args = load_synth_args("config/synth/tiny.yaml", ["train.batch_size=32", "curriculum.stage_steps=1000"])
    curriculum = Curriculum(args, "transformer", 1, tmp_path, "cpu")
    held = recall_batch(np.random.default_rng(1), curriculum.vocab, 512)
    started = time.perf_counter()
    for step in range(500):
        curriculum.train_step(recall_batch(np.random.default_rng([2, step]), curriculum.vocab, 32))
    with torch.no_grad():
        logits = curriculum.model(held.inputs)[torch.arange(512), held.answer_index]
    accuracy = (logits.argmax(-1) == held.answer).float().mean().item()
    assert accuracy >= 0.95, (accuracy, time.perf_counter() - started)  # chance 0.5
