"""The bigram baseline: an interpolated Kneser-Ney bigram model of the training chunks, scored as perplexity on
the same validation tokens as `lt2 eval ppl`.

A language model that has learnt anything beyond "which token tends to follow which" must beat this number,
so the `lm` table prints it as a row beside the trained recipes. Counts come from the tokenized training
chunks, each document framed by BOS/EOS exactly as the trainer packs it (lt2.data.loader), so the model
and the baseline see the same token pairs. Scoring uses `lt2.eval.perplexity.build_stream` with the same
`max_tokens`, hence the same targets: every token of the stream after the first.

Interpolated Kneser-Ney with one absolute discount d (Chen & Goodman 1999, eq. 12 at order 2)::

    P(w | v) = max(c(v, w) - d, 0) / c(v)  +  d * N1+(v, .) / c(v) * P_cont(w)
    P_cont(w) = N1+(., w) / N1+(., .)         (how many distinct tokens precede w)

A context never seen in training falls back to P_cont; a token never seen after anything gets a floor of
add-one mass in P_cont, so every probability is positive and every row sums to one.

    >>> counts = bigram_counts(["data/tiny/shuffled/shakespeare/shakespeare.chunk.00.jsonl"], tokenizer)
    >>> model = KneserNeyBigram.fit(counts)          # sparse pair counts (a 128k vocabulary has 16G pairs)
    >>> nll, n = model.score(stream)                 # summed nats over the n = len(stream) - 1 targets
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lt2.eval.perplexity import build_stream, iter_documents, read_documents
from lt2.progress import Progress

logger = logging.getLogger(__name__)

DISCOUNT = 0.75  # Chen & Goodman's usual single discount; the optimum D = n1 / (n1 + 2 n2) is close to it


def _document_batches(path: Path, text_key: str, batch: int) -> Iterator[list[str]]:
    """The documents of a JSONL file in lists of `batch`, streamed (a paper-scale chunk does not fit in RAM)."""
    docs: list[str] = []
    for doc in iter_documents(path, text_key):
        docs.append(doc)
        if len(docs) == batch:
            yield docs
            docs = []
    if docs:
        yield docs


@dataclass
class BigramCounts:
    """Sparse pair counts: `pairs` (sorted unique prev * V + next, int64) and their `counts` (int64).

    Sparse because a paper-scale vocabulary (128k) makes a dense [V, V] table 128 GiB.
    """

    vocab_size: int
    pairs: np.ndarray  # [P] int64, sorted
    counts: np.ndarray  # [P] int64

    @classmethod
    def from_ids(cls, vocab_size: int, pair_ids: list[np.ndarray]) -> BigramCounts:
        pairs, counts = np.unique(np.concatenate(pair_ids), return_counts=True) if pair_ids else ([], [])
        return cls(vocab_size, np.asarray(pairs, np.int64), np.asarray(counts, np.int64))

    def merge(self, other: BigramCounts) -> BigramCounts:
        pairs, inverse = np.unique(np.concatenate([self.pairs, other.pairs]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([self.counts, other.counts]), minlength=len(pairs))
        return BigramCounts(self.vocab_size, pairs, counts.astype(np.int64))

    def dense(self) -> np.ndarray:
        """counts[prev, next] as an int64 [V, V] array (small vocabularies and tests only)."""
        V = self.vocab_size
        table = np.zeros(V * V, dtype=np.int64)
        table[self.pairs] = self.counts
        return table.reshape(V, V)

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def bigram_counts(
    files: Sequence[str | Path], tokenizer, text_key: str = "text", batch: int = 256, flush_pairs: int = 1 << 24
) -> BigramCounts:
    """Pair counts over every document of `files`, each framed [BOS] doc [EOS] as the trainer packs it.

    Documents are encoded in batches (the tokenizer's Rust threads); pair ids are buffered and folded into the
    sparse counts every `flush_pairs` pairs, so memory stays bounded by the distinct pairs.
    """
    V = tokenizer.vocab_size
    counts = BigramCounts.from_ids(V, [])
    buffer: list[np.ndarray] = []
    buffered = 0
    with Progress("bigram counts", unit="doc") as bar:
        for path in map(Path, files):
            for docs in _document_batches(path, text_key, batch):
                for ids in tokenizer.encode_batch(docs, bos=True, eos=True):
                    a = np.asarray(ids, dtype=np.int64)
                    buffer.append(a[:-1] * V + a[1:])
                    buffered += len(a) - 1
                bar.update(len(docs))
                if buffered >= flush_pairs:
                    counts, buffer, buffered = counts.merge(BigramCounts.from_ids(V, buffer)), [], 0
    return counts.merge(BigramCounts.from_ids(V, buffer))


@dataclass
class KneserNeyBigram:
    """P(next | prev) from sparse counts; `score` sums the NLL of a token stream."""

    counts: BigramCounts
    discount: float
    c_prev: np.ndarray  # [V] float64, c(v)
    n_follow: np.ndarray  # [V] float64, N1+(v, .): distinct tokens seen after v
    p_cont: np.ndarray  # [V] float64, continuation probability (add-one smoothed)

    @classmethod
    def fit(cls, counts: BigramCounts, discount: float = DISCOUNT) -> KneserNeyBigram:
        if not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        V = counts.vocab_size
        prev, nxt = counts.pairs // V, counts.pairs % V
        c_prev = np.bincount(prev, weights=counts.counts, minlength=V).astype(np.float64)
        n_follow = np.bincount(prev, minlength=V).astype(np.float64)
        cont = np.bincount(nxt, minlength=V).astype(np.float64) + 1.0  # distinct left neighbours, add-one
        return cls(counts, discount, c_prev, n_follow, cont / cont.sum())

    def log_prob(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """log P(nxt | prev) for int64 arrays of equal shape."""
        V = self.counts.vocab_size
        key = prev * V + nxt
        pairs = np.append(self.counts.pairs, -1)  # a sentinel, so an empty table and the last slot index safely
        at = np.searchsorted(self.counts.pairs, key)
        c = np.where(pairs[at] == key, np.append(self.counts.counts, 0)[at], 0)
        c_prev = self.c_prev[prev]
        seen = c_prev > 0
        safe = np.where(seen, c_prev, 1.0)
        p = np.where(
            seen,
            (np.maximum(c - self.discount, 0) + self.discount * self.n_follow[prev] * self.p_cont[nxt]) / safe,
            self.p_cont[nxt],
        )
        return np.log(p)

    def score(self, stream: Sequence[int]) -> tuple[float, int]:
        """(summed NLL in nats, targets) of every token of `stream` after the first, given its predecessor."""
        ids = np.asarray(stream, dtype=np.int64)
        if ids.max(initial=0) >= self.counts.vocab_size:
            raise ValueError(f"token id {int(ids.max())} outside the bigram vocabulary of {self.counts.vocab_size}")
        return float(-self.log_prob(ids[:-1], ids[1:]).sum()), len(ids) - 1


@dataclass
class BigramResult:
    """What `lt2 eval bigram` writes: the keys of a `lt2 eval ppl` record that the `lm` table reads."""

    recipe: str  # the row name in the tables
    model: str  # what was fitted ("kneser-ney bigram, d=0.75")
    data: str  # validation file
    train_files: list[str]
    train_tokens: int  # token pairs counted (the baseline's training budget)
    documents: int
    tokens: int  # scored targets
    bytes: int
    nll: float
    ppl: float
    bits_per_byte: float
    max_tokens: int | None


def evaluate_bigram(
    train_files: Sequence[str | Path],
    data: str | Path,
    tokenizer_dir: str | Path,
    max_tokens: int | None = None,
    text_key: str = "text",
    name: str = "bigram_baseline",
) -> BigramResult:
    """Fit the bigram on `train_files` and score the validation stream that `lt2 eval ppl` scores.

    >>> evaluate_bigram(chunks, "data/tiny/shuffled/shakespeare/shakespeare.val.jsonl",
    ...                 "data/tiny/tokenizer", max_tokens=20000).ppl  # doctest: +SKIP
    """
    from lt2.data.tokenizer import Tokenizer

    if not train_files:
        raise ValueError("the bigram baseline needs at least one training file")
    tokenizer = Tokenizer.load(tokenizer_dir)
    counts = bigram_counts(train_files, tokenizer, text_key)
    model = KneserNeyBigram.fit(counts)
    stream, used, nbytes = build_stream(read_documents(data, text_key), tokenizer, max_tokens)
    if len(stream) < 2:
        raise ValueError(f"{data}: the documents give fewer than 2 tokens")
    total, count = model.score(stream)
    return BigramResult(
        recipe=name,
        model=f"kneser-ney bigram, d={DISCOUNT}",
        data=str(data),
        train_files=[str(f) for f in train_files],
        train_tokens=counts.total,
        documents=used,
        tokens=count,
        bytes=nbytes,
        nll=total / count,
        ppl=math.exp(total / count),
        bits_per_byte=total / math.log(2) / nbytes,
        max_tokens=max_tokens,
    )
