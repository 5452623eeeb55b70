"""`lt2 data tokenizer` and the one Tokenizer interface every stage uses (HF `tokenizers` underneath).

Two ways to make a tokenizer directory, both holding the same two files:
    tokenizer.json       the HF tokenizers file (for `hf`, the Hub's file byte for byte)
    lt2_tokenizer.json   {"kind", "source", "revision", "vocab_size", "bos_id", "eos_id", "pad_id", ...tokens}

- `bpe`: a byte-level BPE trained on the shuffled training chunks (never the val file). It pre-splits text
  with Llama-3's regex (so digits come in groups of up to three, as in the paper's tokenizer) and reserves
  ids 0, 1, 2 for `<|begin_of_text|>`, `<|end_of_text|>`, `<|pad|>`.
- `hf`: a pretrained tokenizer from the Hub, e.g. meta-llama/Meta-Llama-3-8B (128,256 tokens; gated: the
  token is read from HF_TOKEN and only handed to huggingface_hub). `from_dir` reads a local copy laid out
  like the Hub repository instead.

Text never turns into special ids: `encode` treats "<|end_of_text|>" inside a document as plain text, and
BOS/EOS are only added through the `bos`/`eos` flags. Otherwise a web page quoting a special token would
inject document boundaries into the packed stream.

    >>> tok = Tokenizer.load("data/tokenizer/shakespeare_bpe")
    >>> ids = tok.encode("To be, or not to be", bos=True, eos=True)    # [1 + n + 1] ints, ids[0] == tok.bos_id
    >>> tok.decode(ids[1:-1])
    'To be, or not to be'
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from lt2.data.jsonl import ReadStats, read_jsonl, write_json
from lt2.files import atomic_open

logger = logging.getLogger(__name__)

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
TOKENIZER_FILE, META_FILE = "tokenizer.json", "lt2_tokenizer.json"
KINDS = ("bpe", "hf")
# Llama-3's pre-tokenizer split (from its tokenizer.json): contractions, letter runs, 1-3 digit groups, symbols.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Hub tokenizers without a pad token (Llama-3 has none): the first of these in the vocabulary is used.
PAD_CANDIDATES = (PAD, "<|finetune_right_pad_id|>", "<|reserved_special_token_0|>")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class TokenizerMeta:
    kind: str  # "bpe" | "hf"
    source: str  # training files (bpe) or Hub repository id (hf)
    revision: str | None  # Hub commit the files came from (hf), None otherwise
    vocab_size: int  # embedding rows needed: the tokenizer's size including special tokens
    bos_id: int
    eos_id: int
    pad_id: int
    bos_token: str
    eos_token: str
    pad_token: str


class Tokenizer:
    """Text <-> token ids. `encode(str) -> list[int]`, `encode_batch(list[str]) -> list[list[int]]`, `decode`."""

    def __init__(self, tok: tokenizers.Tokenizer, meta: TokenizerMeta):
        for token, tid in ((meta.bos_token, meta.bos_id), (meta.eos_token, meta.eos_id), (meta.pad_token, meta.pad_id)):
            if tok.token_to_id(token) != tid:
                raise ValueError(
                    f"{META_FILE} says {token!r} has id {tid}, tokenizer.json says {tok.token_to_id(token)}"
                )
        tok.encode_special_tokens = True  # special-token strings in text are plain text (see module docstring)
        self._tok, self.meta = tok, meta

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """The tokenizer in directory `path` (tokenizer.json + lt2_tokenizer.json)."""
        path = Path(path)
        if not (path / TOKENIZER_FILE).is_file() or not (path / META_FILE).is_file():
            raise ValueError(f"{path} is not a tokenizer directory: it needs {TOKENIZER_FILE} and {META_FILE}")
        with open(path / META_FILE) as f:
            meta = TokenizerMeta(**json.load(f))
        return cls(tokenizers.Tokenizer.from_file(str(path / TOKENIZER_FILE)), meta)

    @property
    def vocab_size(self) -> int:
        return self.meta.vocab_size

    @property
    def bos_id(self) -> int:
        return self.meta.bos_id

    @property
    def eos_id(self) -> int:
        return self.meta.eos_id

    @property
    def pad_id(self) -> int:
        return self.meta.pad_id

    def _wrap(self, ids: list[int], bos: bool, eos: bool) -> list[int]:
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`, optionally framed by BOS / EOS: [bos?] + ids + [eos?]."""
        return self._wrap(self._tok.encode(text, add_special_tokens=False).ids, bos, eos)

    def encode_batch(self, texts: Sequence[str], bos: bool = False, eos: bool = False) -> list[list[int]]:
        """`encode` of each text, in parallel across texts (Rust threads; set TOKENIZERS_PARALLELISM in forks)."""
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [self._wrap(e.ids, bos, eos) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; special tokens appear as their strings, so decode(encode(s)) == s."""
        return self._tok.decode(list(ids), skip_special_tokens=False)


def _save(tok_json: bytes, meta: TokenizerMeta, out: Path) -> Tokenizer:
    """Write tokenizer.json, then lt2_tokenizer.json (last: its presence means the directory is complete)."""
    with atomic_open(out / TOKENIZER_FILE) as f:
        f.write(tok_json)
    write_json(out / META_FILE, asdict(meta))
    return Tokenizer.load(out)


# ---------------------------------------------------------------------------------------------------- bpe
def training_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files a BPE trains on: each input file as given, and each directory's `*.chunk.*.jsonl` (not val)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            chunks = sorted(item.glob("*.chunk.*.jsonl"))
            if not chunks:
                raise ValueError(f"--input {item} holds no *.chunk.*.jsonl training chunks (run `lt2 data shuffle`)")
            files += chunks
        elif item.is_file():
            files.append(item)
        else:
            raise ValueError(f"--input {item} is neither a file nor a directory")
    if not files:
        raise ValueError("--input names no files")
    return files


def _texts(files: list[Path], stats: ReadStats) -> Iterator[str]:
    for path in files:
        for _, record in read_jsonl(path, stats):
            yield record["text"]


def train_bpe(inputs: Sequence[str | os.PathLike], vocab_size: int, out: str | os.PathLike) -> Tokenizer:
    """Train a byte-level BPE of `vocab_size` tokens (3 special + 256 bytes + merges) and save it to `out`."""
    if vocab_size < 256 + 3:
        raise ValueError(f"--vocab-size must be >= 259 (256 bytes + 3 special tokens), got {vocab_size}")
    files = training_files(inputs)
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text is encodable
        show_progress=sys.stderr.isatty(),
    )
    stats = ReadStats()
    tok.train_from_iterator(_texts(files, stats), trainer=trainer)
    if stats.malformed:
        logger.warning("tokenizer training input: %s", stats.report())
    if stats.records == 0:
        raise ValueError(f"no documents in {', '.join(map(str, files))}")
    if tok.get_vocab_size() < vocab_size:  # the corpus ran out of pairs to merge
        logger.warning("only %d tokens learned, fewer than --vocab-size %d", tok.get_vocab_size(), vocab_size)
    ids = [tok.token_to_id(t) for t in (BOS, EOS, PAD)]
    source = ", ".join(str(p) for p in files) if len(files) <= 4 else f"{files[0].parent} ({len(files)} files)"
    meta = TokenizerMeta("bpe", source, None, tok.get_vocab_size(), *ids, BOS, EOS, PAD)
    logger.info("trained BPE: %d tokens on %d documents", meta.vocab_size, stats.records)
    return _save(tok.to_str().encode("utf-8"), meta, Path(out))


# ----------------------------------------------------------------------------------------------------- hf
def _token_str(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as a string or as an AddedToken dict with "content"."""
    return value.get("content") if isinstance(value, dict) else value


def _hub_files(name: str, revision: str | None) -> tuple[Path, Path | None, str | None]:
    """tokenizer.json and tokenizer_config.json (if the repo has one) from the Hub cache, and their commit."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    token = os.environ.get("HF_TOKEN") or None  # handed to huggingface_hub only; never printed or logged
    try:
        tok_path = Path(hf_hub_download(name, TOKENIZER_FILE, revision=revision, token=token))
        try:
            config_path = Path(hf_hub_download(name, "tokenizer_config.json", revision=revision, token=token))
        except EntryNotFoundError:
            config_path = None
    except GatedRepoError as err:
        raise ValueError(f"{name} is gated: set HF_TOKEN to a token of an account that accepted its licence") from err
    except RepositoryNotFoundError as err:
        raise ValueError(f"no Hub repository {name!r} (or it is private and HF_TOKEN has no access)") from err
    commit = tok_path.parent.name  # the cache stores files under snapshots/<commit>/
    return tok_path, config_path, commit if _COMMIT.match(commit) else revision


def fetch_hf_tokenizer(
    name: str, out: str | os.PathLike, revision: str | None = None, from_dir: str | os.PathLike | None = None
) -> Tokenizer:
    """Copy Hub repository `name`'s tokenizer.json to `out` and record its bos/eos/pad ids.

    bos/eos come from tokenizer_config.json (else the Llama-3 names); pad from it too, else the first of
    PAD_CANDIDATES in the vocabulary, else eos (with a warning).
    """
    if from_dir is not None:
        from_dir = Path(from_dir)
        tok_path, config_path = from_dir / TOKENIZER_FILE, from_dir / "tokenizer_config.json"
        if not tok_path.is_file():
            raise ValueError(f"--from-dir {from_dir} has no {TOKENIZER_FILE}")
        config_path = config_path if config_path.is_file() else None
        revision = None
    else:
        tok_path, config_path, revision = _hub_files(name, revision)
    config = json.loads(config_path.read_text()) if config_path else {}
    tok = tokenizers.Tokenizer.from_file(str(tok_path))
    bos = _token_str(config.get("bos_token")) or BOS
    eos = _token_str(config.get("eos_token")) or EOS
    pad = _token_str(config.get("pad_token")) or next(
        (t for t in PAD_CANDIDATES if tok.token_to_id(t) is not None), None
    )
    if pad is None:
        logger.warning("%s has no pad token or reserved token: pad = eos (%s)", name, eos)
        pad = eos
    ids = [tok.token_to_id(t) for t in (bos, eos, pad)]
    if None in ids:
        missing = [t for t, i in zip((bos, eos, pad), ids) if i is None]
        raise ValueError(f"{name}: special tokens {missing} are not in its tokenizer.json")
    meta = TokenizerMeta("hf", name, revision, tok.get_vocab_size(with_added_tokens=True), *ids, bos, eos, pad)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(tok_path, "rb") as f:
        return _save(f.read(), meta, out)


def make_tokenizer(
    kind: str,
    out: str | os.PathLike,
    *,
    inputs: Sequence[str | os.PathLike] = (),
    vocab_size: int | None = None,
    name: str | None = None,
    revision: str | None = None,
    from_dir: str | os.PathLike | None = None,
) -> Tokenizer:
    """`lt2 data tokenizer`: train (`bpe`: inputs, vocab_size) or fetch (`hf`: name) a tokenizer into `out`."""
    if kind == "bpe":
        if not inputs or vocab_size is None:
            raise ValueError("--kind bpe needs --input and --vocab-size")
        if name or from_dir:
            logger.warning("--name / --from-dir are ignored with --kind bpe")
        return train_bpe(inputs, vocab_size, out)
    if kind == "hf":
        if not name:
            raise ValueError("--kind hf needs --name (a Hub repository, e.g. meta-llama/Meta-Llama-3-8B)")
        if inputs or vocab_size is not None:
            logger.warning("--input / --vocab-size are ignored with --kind hf")
        return fetch_hf_tokenizer(name, out, revision=revision, from_dir=from_dir)
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
