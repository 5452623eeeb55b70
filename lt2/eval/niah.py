"""Needle-in-a-haystack prompts (RULER's NIAH-Single-1/2/3), generated offline, seeded, sized in model tokens.

RULER (Hsieh et al., 2024) as lm-eval ships it (`lm_eval/tasks/ruler`) downloads nltk's punkt tables at import,
reads Paul Graham's essays from the Hugging Face Hub and sizes prompts with a `transformers` tokenizer, none
of which works offline. This module keeps RULER's needle, question template, answer prefix, depth grid,
needle/key/value kinds and scoring, and differs in four documented ways:

- the essay haystack (NIAH-S2/S3) is text the project already has: the held-out documents of the run's corpus
  (Shakespeare at the tiny scale, FineWeb-Edu at paper scale) instead of Paul Graham's essays;
- sentences are split by a regex (after . ! ?) instead of nltk's punkt;
- a prompt of context length L is L model tokens (BOS, template, haystack, needle, question and answer prefix)
  within a few tokens, fitted word by word; RULER instead counts its 128 generated tokens inside L and fits
  the haystack in steps of 500 words (essay) or 25 repeats;
- every sample draws from its own generator seeded by (seed, task, L, index), so a prompt is the same in every
  run and does not depend on which other lengths or tasks were generated.

Keys are RULER's adjective-noun words from wonderwords' lists; values are 7-digit numbers (S1, S2) or
UUIDs (S3). Scoring is RULER's `string_match_all`: the answer appears in the prediction, case-insensitively.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

# RULER's single-needle templates (prepare_niah.py / niah_utils.py, with the one-needle substitutions RULER
# applies: "Some" -> "A", "are all" -> "is", "numbers" -> "number" in the question).
TEMPLATE = (
    "A special magic {value_kind} is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {value_kind} afterwards.\n{context}\n"
    "What is the special magic {value_kind} for {query} mentioned in the provided text?"
)
NEEDLE = "One of the special magic {value_kinds} for {key} is: {value}."
ANSWER_PREFIX = "The special magic {value_kind} for {query} mentioned in the provided text is"
REPEAT_HAYSTACK = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
DEPTHS = [round(100 * i / 39) for i in range(40)]  # RULER: np.linspace(0, 100, 40) rounded, in percent


@dataclass(frozen=True)
class NiahKind:
    haystack: str  # "repeat" (RULER's fixed sentences) or "essay" (natural text)
    value: str  # "numbers" or "uuids"


KINDS: dict[str, NiahKind] = {
    "niah_single_1": NiahKind("repeat", "numbers"),
    "niah_single_2": NiahKind("essay", "numbers"),
    "niah_single_3": NiahKind("essay", "uuids"),
}


# ------------------------------------------------------------------ pieces
@cache
def key_words() -> tuple[list[str], list[str]]:
    """(adjectives, nouns) of wonderwords' lists: RULER's needle keys are `<adjective>-<noun>` pairs."""
    assets = files("wonderwords") / "assets"
    adjectives = (assets / "adjectivelist.txt").read_text().split()
    nouns = (assets / "nounlist.txt").read_text().split()
    return adjectives, nouns


def random_key(rng: random.Random) -> str:
    adjectives, nouns = key_words()
    return f"{rng.choice(adjectives)}-{rng.choice(nouns)}"


def random_value(kind: str, rng: random.Random) -> str:
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))  # RULER: 7 digits
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle value kind {kind!r}; choose numbers or uuids")


def split_sentences(text: str) -> list[str]:
    """Sentences of whitespace-normalised text, split after . ! ? (RULER uses nltk's punkt here)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


@cache  # every (task, length) dataset of a run reads the same file
def read_haystack(path: str | Path, text_key: str = "text") -> list[str]:
    """Words of every document in a JSONL file, in order, whitespace-normalised (RULER's essay haystack)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"NIAH haystack file {str(path)!r} does not exist (JSONL with a {text_key!r} field)")
    texts = [json.loads(line)[text_key] for line in path.read_text().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", " ".join(texts)).strip().split(" ")


def haystack_words(kind: NiahKind, essay: list[str] | None, n: int) -> list[str]:
    """The first n haystack words: RULER's repeated sentences, or the essay text."""
    if kind.haystack == "repeat":
        unit = REPEAT_HAYSTACK.split(" ")
        return [unit[i % len(unit)] for i in range(n)]
    if essay is None:
        raise ValueError("NIAH-Single-2/3 need an essay haystack: pass a JSONL file of documents")
    if n > len(essay):
        raise ValueError(f"the essay haystack has {len(essay)} words; this context needs more than {n}")
    return essay[:n]


def insert_needle(words: list[str], needle: str, depth: int) -> str:
    """Haystack text with the needle at the sentence boundary at `depth` percent of its sentences (RULER)."""
    sentences = split_sentences(" ".join(words))
    at = int(len(sentences) * depth / 100)
    return " ".join([*sentences[:at], needle, *sentences[at:]])


# ------------------------------------------------------------------ samples
@dataclass
class NiahSample:
    input: str  # the prompt up to the question (lm-eval's doc_to_text)
    gen_prefix: str  # the answer prefix the model continues (lm-eval's gen_prefix)
    outputs: list[str]  # the needle value(s) the answer must contain
    context_length: int  # the requested L
    length: int  # tokens of BOS + input + " " + gen_prefix
    depth: int  # needle depth, percent of the haystack's sentences
    index: int


def make_sample(task: str, length: int, index: int, seed: int, count_tokens, essay: list[str] | None) -> NiahSample:
    """One prompt of `task` at `length` tokens: the longest haystack (in words) whose prompt fits in `length`.

    count_tokens(text) -> int counts what the model sees (BOS included). Raises when even an empty haystack
    does not fit, naming the shortest possible length.
    """
    if task not in KINDS:
        raise ValueError(f"unknown NIAH task {task!r}; choose one of {', '.join(KINDS)}")
    kind = KINDS[task]
    rng = random.Random(f"{seed}:{task}:{length}:{index}")  # str seeds hash with sha512: stable across runs
    key, value, depth = random_key(rng), random_value(kind.value, rng), rng.choice(DEPTHS)
    value_kind = kind.value[:-1]
    needle = NEEDLE.format(value_kinds=kind.value, key=key, value=value)
    prefix = ANSWER_PREFIX.format(value_kind=value_kind, query=key)

    def build(n: int) -> tuple[str, int]:
        context = insert_needle(haystack_words(kind, essay, n), needle, depth)
        text = TEMPLATE.format(value_kind=value_kind, context=context, query=key)
        return text, count_tokens(text + " " + prefix)

    text, used = build(0)
    if used > length:
        raise ValueError(f"{task}: context length {length} is too short; the prompt without haystack takes {used}")
    lo, hi = 0, 1  # grow an upper bound, then bisect: the largest n whose prompt fits
    while build(hi)[1] <= length:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if build(mid)[1] <= length else (lo, mid)
    # Token counts are not monotone in n (a word can move the needle to another sentence boundary, and BPE
    # merges across words), so look a few words past the bisection for a longer prompt that still fits.
    lo = max([lo, *(n for n in range(lo + 1, lo + 9) if build(n)[1] <= length)])
    text, used = build(lo)
    return NiahSample(text, prefix, [value], length, used, depth, index)


def niah_samples(
    task: str, lengths: list[int], num_samples: int, seed: int, count_tokens, essay: list[str] | None = None
) -> list[dict]:
    """`num_samples` prompts per context length, as rows for an lm-eval dataset."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not lengths or any(int(n) < 1 for n in lengths):
        raise ValueError(f"context lengths must be positive token counts, got {lengths}")
    return [
        vars(make_sample(task, int(length), i, seed, count_tokens, essay))
        for length in lengths
        for i in range(num_samples)
    ]


# ------------------------------------------------------------------ scoring (RULER's)
def postprocess_pred(prediction: str) -> str:
    """RULER: strip, and control characters become newlines."""
    return re.sub(r"[\x00-\x1f]", "\n", prediction.strip()).strip()


def string_match_all(prediction: str, references: list[str]) -> float:
    """RULER's per-sample score: the fraction of references found in the prediction, case-insensitively."""
    pred = postprocess_pred(prediction).lower()
    return sum(r.lower() in pred for r in references) / len(references)
