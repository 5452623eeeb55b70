"""The pointer-swap program: state tracking + recall (the paper's §3.6, Olmo Hybrid's state-based recall).

A program of size (n, m): a bit array of m fair random bits, five pointer variables a..e at distinct
addresses in [0, m), n swap lines (each a transposition of two different variables), and a final query
`assert bits[v] == _` whose answer is the bit at v's final address. Optionally, intermediate state reveals
`assert x == <address>` after every s-th swap line (s drawn per program from the powers of two up to n; x a
random variable) teach the model to track the pointers; a `strict_share` of the programs has none, and
evaluation uses strict programs only.

Ground truth (`Programs`) is sampled and simulated on arrays, independently of the token layout; `render`
turns it into tokens afterwards. Vocabulary (`Vocab`, ids in this order):

    <pad> <bos> ⏎ = == [ ] assert bits      punctuation and keywords (ids 0-8)
    0 1                                     bit values (9, 10)
    a b c d e                               variables (11-15)
    @0 @1 ... @{max_m - 1}                  addresses (16 ...)

Layout of one program (one token per item; the rendered text on the right):

    <bos> bits = [ @0 b0 @1 b1 ... ] ⏎        bits = [@0: 1, @1: 0, ...]   (2m + 6 tokens)
    a = @17 ⏎   ... e = @3 ⏎                   a = 17 ...                    (20 tokens)
    a c ⏎                                      a, c = c, a                   (3 tokens per swap line)
    assert b == @5 ⏎                           assert b == 5   (a reveal: the address is a target)
    assert bits [ d ] == 1                     the final query; its last token is the answer

Addresses are explicit tokens so that recall is by content (find `@k` in the bit array) rather than by
counting positions. Chance is 0.5; the shortcut "bit at v's initial address" scores 0.2 + 0.8 * 0.5 = 0.6
for long programs (a random walk over the five variables leaves v at home with probability ~1/5), and the
majority bit over the five pointed-to addresses ~0.69 whatever the length (`Programs.majority`: no tracking,
no binding of names to addresses; it is where models in the learning plateau sit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

N_VARS = 5
VAR_NAMES = "abcde"
PUNCT = ("<pad>", "<bos>", "⏎", "=", "==", "[", "]", "assert", "bits")
IGNORE = -100  # target id that the loss skips


@dataclass(frozen=True)
class Vocab:
    """Token ids of the task's vocabulary for addresses up to `max_m` (see the module docstring)."""

    max_m: int

    PAD, BOS, NL, EQ, EQEQ, LBR, RBR, ASSERT, BITS = range(9)
    BIT0 = 9
    VAR0 = 11
    ADDR0 = 16

    @property
    def size(self) -> int:
        return self.ADDR0 + self.max_m

    def names(self) -> list[str]:
        return [*PUNCT, "0", "1", *VAR_NAMES, *(f"@{i}" for i in range(self.max_m))]

    def decode(self, tokens) -> str:
        """Token ids -> the program text (padding dropped), for people and logs."""
        names, lines, line = self.names(), [], []
        for t in (int(x) for x in tokens):
            if t == self.PAD:
                continue
            if t == self.NL:
                lines.append(" ".join(line))
                line = []
            else:
                line.append(names[t])
        return "\n".join([*lines, " ".join(line)] if line else lines)


@dataclass
class Programs:
    """A batch of B programs of size (n, m), as arrays (no tokens). Shapes in the field comments."""

    bits: np.ndarray  # [B, m] int64 in {0, 1}
    init: np.ndarray  # [B, 5] distinct initial addresses of a..e
    swaps: np.ndarray  # [B, n, 2] variable pairs (x != y) swapped by each line
    query: np.ndarray  # [B] the variable of the final assert
    spacing: np.ndarray  # [B] a reveal after every spacing-th swap line; 0: a strict program (no reveals)
    reveal_var: np.ndarray  # [B, n] the variable revealed after line i (where a reveal is present)
    states: np.ndarray  # [B, n + 1, 5] address of each variable before the first / after every swap line

    @property
    def answer(self) -> np.ndarray:
        """[B] the bit at the query variable's final address."""
        final = self.states[np.arange(len(self.query)), -1, self.query]
        return self.bits[np.arange(len(self.query)), final]

    @property
    def shortcut(self) -> np.ndarray:
        """[B] the bit at the query variable's *initial* address: the no-tracking baseline."""
        return self.bits[np.arange(len(self.query)), self.init[np.arange(len(self.query)), self.query]]

    @property
    def majority(self) -> np.ndarray:
        """[B] the majority bit over the five pointed-to addresses: a baseline that knows which addresses the
        variables hold (a set that swaps never change) but not which variable holds which; ~0.69 (= 110/160)."""
        held = self.bits[np.arange(len(self.query))[:, None], self.init]
        return (held.sum(1) > N_VARS // 2).astype(self.bits.dtype)

    def has_reveal(self) -> np.ndarray:
        """[B, n] whether a reveal follows swap line i."""
        line = np.arange(1, self.swaps.shape[1] + 1)[None, :]
        spacing = self.spacing[:, None]
        return (spacing > 0) & (line % np.maximum(spacing, 1) == 0)


def check_size(n: int, m: int) -> None:
    if n < 1 or m < N_VARS:
        raise ValueError(f"program size needs n >= 1 swap lines and m >= {N_VARS} addresses, got n={n}, m={m}")


def sample_programs(
    rng: np.random.Generator, batch: int, n: int, m: int, reveals: bool, strict_share: float
) -> Programs:
    """Draw `batch` programs of n swap lines over m bits and simulate them (vectorised over the batch).

    reveals=False makes every program strict; otherwise each is strict with probability `strict_share`
    and else gets a spacing drawn uniformly from the powers of two up to n.
    """
    check_size(n, m)
    if not 0.0 <= strict_share <= 1.0:
        raise ValueError(f"strict_share must lie in [0, 1], got {strict_share}")
    rows = np.arange(batch)
    bits = rng.integers(0, 2, (batch, m))
    init = rng.random((batch, m)).argsort(axis=1)[:, :N_VARS]  # a random injection of a..e into [0, m)
    first = rng.integers(0, N_VARS, (batch, n))
    swaps = np.stack([first, (first + rng.integers(1, N_VARS, (batch, n))) % N_VARS], axis=-1)  # x != y
    query = rng.integers(0, N_VARS, batch)
    powers = 2 ** np.arange(int(np.log2(n)) + 1)
    spacing = rng.choice(powers, batch)
    strict = rng.random(batch) < strict_share if reveals else np.ones(batch, dtype=bool)
    spacing = np.where(strict, 0, spacing)
    reveal_var = rng.integers(0, N_VARS, (batch, n))
    states = np.empty((batch, n + 1, N_VARS), dtype=np.int64)
    states[:, 0] = init
    for i in range(n):  # one transposition per line: exchange the two variables' addresses
        state = states[:, i].copy()
        x, y = swaps[:, i, 0], swaps[:, i, 1]
        state[rows, x], state[rows, y] = states[rows, i, y], states[rows, i, x]
        states[:, i + 1] = state
    return Programs(bits, init, swaps, query, spacing, reveal_var, states)


@dataclass
class TokenBatch:
    """Rendered programs: next-token inputs/targets and where the final answer is predicted."""

    inputs: torch.Tensor  # [B, L] int64 (right-padded with <pad>)
    targets: torch.Tensor  # [B, L] int64: the next token where it counts in the loss, else IGNORE
    answer_index: torch.Tensor  # [B] position in `inputs` whose prediction is the final answer
    answer: torch.Tensor  # [B] the answer's token id

    def to(self, device) -> TokenBatch:
        return TokenBatch(*(t.to(device, non_blocking=True) for t in (self.inputs, self.targets,
                                                                       self.answer_index, self.answer)))  # fmt: skip


def max_length(n: int, m: int) -> int:
    """Tokens of the longest program of size (n, m): a reveal after every swap line."""
    return (2 * m + 6) + 4 * N_VARS + 8 * n + 7


def render(programs: Programs, vocab: Vocab, loss_tokens: str = "answers", pad_to: int | None = None) -> TokenBatch:
    """Programs -> tokens in the layout of the module docstring.

    loss_tokens "answers": only the reveal addresses and the final bit are targets; "all": every
    next token up to the answer (the random bits and swaps are then unpredictable noise in the loss).
    pad_to: right-pad every program to this many tokens (>= the longest), so that batch shapes are static.
    """
    if loss_tokens not in ("answers", "all"):
        raise ValueError(f"loss_tokens={loss_tokens!r}; valid: answers, all")
    B, n, _ = programs.swaps.shape
    m = programs.bits.shape[1]
    if m > vocab.max_m:
        raise ValueError(f"m={m} addresses exceed the vocabulary's max_m={vocab.max_m}")
    V, rows = vocab, np.arange(B)
    full = lambda *shape: np.full(shape, 0, dtype=np.int64)  # noqa: E731

    pairs = np.stack([V.ADDR0 + np.arange(m)[None].repeat(B, 0), V.BIT0 + programs.bits], axis=-1).reshape(B, 2 * m)
    head = np.concatenate(
        [np.array([[V.BOS, V.BITS, V.EQ, V.LBR]]).repeat(B, 0), pairs, np.array([[V.RBR, V.NL]]).repeat(B, 0)], 1
    )
    init = full(B, N_VARS, 4)
    init[..., 0], init[..., 1], init[..., 2], init[..., 3] = (
        V.VAR0 + np.arange(N_VARS),
        V.EQ,
        V.ADDR0 + programs.init,
        V.NL,
    )

    body = full(B, n, 8)  # per swap line: x y ⏎ then an optional reveal `assert r == @addr ⏎`
    body[..., 0], body[..., 1], body[..., 2] = V.VAR0 + programs.swaps[..., 0], V.VAR0 + programs.swaps[..., 1], V.NL
    revealed = programs.states[rows[:, None], np.arange(1, n + 1)[None], programs.reveal_var]  # [B, n]
    body[..., 3], body[..., 4], body[..., 5], body[..., 6], body[..., 7] = (
        V.ASSERT, V.VAR0 + programs.reveal_var, V.EQEQ, V.ADDR0 + revealed, V.NL)  # fmt: skip
    keep_body = np.ones((B, n, 8), dtype=bool)
    keep_body[..., 3:] = programs.has_reveal()[..., None]
    target_body = np.zeros((B, n, 8), dtype=bool)
    target_body[..., 6] = True

    tail = np.stack([np.full(B, V.ASSERT), np.full(B, V.BITS), np.full(B, V.LBR), V.VAR0 + programs.query,
                     np.full(B, V.RBR), np.full(B, V.EQEQ), V.BIT0 + programs.answer], 1)  # fmt: skip

    tokens = np.concatenate([head, init.reshape(B, -1), body.reshape(B, -1), tail], 1)
    keep = np.concatenate([np.ones((B, head.shape[1] + 4 * N_VARS), bool), keep_body.reshape(B, -1),
                           np.ones((B, 7), bool)], 1)  # fmt: skip
    is_answer = np.zeros_like(keep)
    is_answer[:, head.shape[1] + 4 * N_VARS : -7] = target_body.reshape(B, -1)
    is_answer[:, -1] = True
    # compact each row to its kept tokens (right padding): position of a kept token = kept tokens before it
    position = keep.cumsum(1) - 1
    length = keep.sum(1)
    L = int(length.max())
    if pad_to is not None:
        if pad_to < L:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest program ({L} tokens)")
        L = pad_to
    out = np.full((B, L), V.PAD, dtype=np.int64)
    counts = np.zeros((B, L), dtype=bool)
    r, c = np.nonzero(keep)
    out[r, position[r, c]] = tokens[r, c]
    counts[r, position[r, c]] = is_answer[r, c] if loss_tokens == "answers" else True
    targets = np.where(counts[:, 1:], out[:, 1:], IGNORE)
    if loss_tokens == "all":
        targets = np.where(out[:, 1:] == V.PAD, IGNORE, targets)
    return TokenBatch(
        inputs=torch.from_numpy(out[:, :-1]),
        targets=torch.from_numpy(targets),
        answer_index=torch.from_numpy(length - 2),
        answer=torch.from_numpy(V.BIT0 + programs.answer),
    )


def program_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one (seed, stage, step, purpose) key: batches are reproducible without RNG state."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))
