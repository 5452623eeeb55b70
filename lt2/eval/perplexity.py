"""Validation perplexity and bits per byte of an exported model on held-out JSONL documents.

The documents become one token stream packed as in training (lt2.data.loader), each framed by the
tokenizer's BOS and EOS, so the first word of every document is predicted from a document boundary:

    stream = [bos] doc_1 [eos] [bos] doc_2 [eos] ...      targets: every token after the first

Windows of `seq_len` inputs slide over the stream by `stride` tokens; each target is scored exactly once,
in the first window that contains it, and later windows only add context (the usual sliding-window
perplexity). `stride == seq_len` is the packed case: non-overlapping windows, cheapest, least context.

    ppl           = exp(total NLL / scored tokens)
    bits per byte = total NLL / ln 2 / UTF-8 bytes of the scored documents  (tokenizer-independent)

Both count the BOS/EOS targets, like the trainer's validation loss, so the numbers are comparable with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass
class PplArgs:
    seq_len: int | None = None  # tokens per window; None: the training seq_len (recipe.yaml), else max_seqlen
    doc_mask: bool | None = None  # keep documents apart inside a window; None: as in training (recipe.yaml)
    stride: int | None = None  # tokens a window advances; None: seq_len (packed, no overlap)
    batch_size: int = 8  # windows per forward pass
    max_tokens: int | None = None  # stop adding documents once the stream holds this many tokens (None: all)
    text_key: str = "text"  # JSON field that holds a document
    device: str = "auto"  # auto | cpu | cuda[:i]

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seq_len is None:  # resolved against the model in evaluate_perplexity
            return
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {self.seq_len}")
        if self.stride is None:
            self.stride = self.seq_len
        if not 0 < self.stride <= self.seq_len:
            raise ValueError(f"stride must be in 1..seq_len={self.seq_len}, got {self.stride}")


@dataclass
class PplResult:
    seq_len: int  # window length used
    stride: int
    documents: int
    tokens: int  # scored targets
    bytes: int  # UTF-8 bytes of the documents
    nll: float  # mean negative log-likelihood, nats per token
    ppl: float
    bits_per_byte: float


@dataclass
class Window:
    begin: int  # index of the first input token in the stream
    length: int  # input tokens (= targets) in this window
    skip: int  # leading targets already scored by an earlier window


def iter_documents(path: str | Path, text_key: str) -> Iterator[str]:
    """The `text_key` field of every record of a JSONL file, streamed; blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if text_key not in record:
                raise ValueError(f"{path}:{i}: no {text_key!r} field (keys: {sorted(record)})")
            yield record[text_key]


def read_documents(path: str | Path, text_key: str) -> list[str]:
    docs = list(iter_documents(path, text_key))
    if not docs:
        raise ValueError(f"{path} holds no documents")
    return docs


def build_stream(docs: list[str], tokenizer, max_tokens: int | None) -> tuple[list[int], int, int]:
    """(token stream, documents used, their UTF-8 bytes); whole documents only, so bytes stay exact."""
    stream, used, nbytes = [], 0, 0
    for doc, ids in zip(docs, tokenizer.encode_batch(docs, bos=True, eos=True)):
        stream.extend(ids)
        used += 1
        nbytes += len(doc.encode("utf-8"))
        if max_tokens is not None and len(stream) - 1 >= max_tokens:
            break
    return stream, used, nbytes


def plan_windows(n_targets: int, seq_len: int, stride: int) -> list[Window]:
    """Windows over target indices 0..n_targets-1 (target j is stream[j + 1]); each target is scored once."""
    windows, scored = [], 0  # targets [0, scored) of the stream's target list are done
    begin = 0
    while scored < n_targets:
        length = min(seq_len, n_targets - begin)
        windows.append(Window(begin, length, skip=scored - begin))
        scored = begin + length
        begin += stride
    return windows


def training_data_args(model_dir: str | Path) -> dict:
    """The `data` section of the `recipe.yaml` that `lt2 train` writes beside the weights ({} without one).

    Its seq_len and doc_mask are the defaults here, so perplexity matches the trainer's validation loss.
    """
    recipe = Path(model_dir) / "recipe.yaml"
    if not recipe.is_file():
        return {}
    import yaml

    return (yaml.safe_load(recipe.read_text()) or {}).get("data") or {}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def score_stream(
    model, stream: list[int], args: PplArgs, bos_id: int | None = None, progress: bool = True
) -> tuple[float, int]:
    """(summed NLL in nats, scored targets) of `stream` under `model` (a LoopedLM in eval mode).

    bos_id: when given, every BOS starts a document that no attention or state crosses (the loader's
    doc_start), as in training with `data.doc_mask`.
    """
    from tqdm import tqdm

    device = next(model.parameters()).device
    ids = torch.tensor(stream, dtype=torch.long)
    windows = plan_windows(len(stream) - 1, args.seq_len, args.stride)
    # Full-length windows share a batch; the last, shorter one runs alone.
    batches: list[list[Window]] = []
    for w in windows:
        if batches and len(batches[-1]) < args.batch_size and batches[-1][0].length == w.length:
            batches[-1].append(w)
        else:
            batches.append([w])
    total, count = 0.0, 0
    # bf16 on GPUs as in training; fp32 on CPU, where bf16 matmuls are slow and the reference is fp32
    on_gpu = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)
    for batch in tqdm(batches, desc="ppl", unit="batch", disable=not progress):
        x = torch.stack([ids[w.begin : w.begin + w.length] for w in batch]).to(device)  # [B, T]
        y = torch.stack([ids[w.begin + 1 : w.begin + w.length + 1] for w in batch]).to(device)  # [B, T]
        keep = torch.stack([torch.arange(w.length) >= w.skip for w in batch]).to(device)  # [B, T]
        doc_start = (x == bos_id) if bos_id is not None else None  # [B, T]
        with autocast:
            logits = model(x, doc_start)  # [B, T, V]
        nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)
        total += nll[keep].double().sum().item()
        count += int(keep.sum().item())
    return total, count


def evaluate_perplexity(
    model_dir: str | Path, data: str | Path, tokenizer_dir: str | Path, args: PplArgs, progress: bool = True
) -> PplResult:
    """Perplexity of the model in `model_dir` (config.json + model.safetensors) on the documents in `data`.

    >>> evaluate_perplexity("results/tiny/train/tiny/lt2_full", "data/tiny/shuffled/shakespeare.val.jsonl",
    ...                     "data/tiny/tokenizer", PplArgs(seq_len=256, stride=128)).ppl  # doctest: +SKIP
    """
    from lt2.model.looped import LoopedLM

    model = LoopedLM.from_pretrained(model_dir, device=resolve_device(args.device)).eval()
    trained = training_data_args(model_dir)
    if args.seq_len is None:
        args = dataclasses.replace(args, seq_len=trained.get("seq_len") or model.args.max_seqlen)
    if args.doc_mask is None:
        args = dataclasses.replace(args, doc_mask=bool(trained.get("doc_mask", False)))
    if args.seq_len > model.args.max_seqlen:
        raise ValueError(f"seq_len {args.seq_len} exceeds the model's max_seqlen {model.args.max_seqlen}")
    from lt2.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(tokenizer_dir)
    if tokenizer.vocab_size > model.args.vocab_size:
        raise ValueError(
            f"tokenizer in {tokenizer_dir} has {tokenizer.vocab_size} tokens, the model only {model.args.vocab_size}"
        )
    stream, used, nbytes = build_stream(read_documents(data, args.text_key), tokenizer, args.max_tokens)
    if len(stream) < 2:
        raise ValueError(f"{data}: the documents give fewer than 2 tokens")
    total, count = score_stream(model, stream, args, tokenizer.bos_id if args.doc_mask else None, progress)
    nll = total / count
    return PplResult(
        seq_len=args.seq_len,
        stride=args.stride,
        documents=used,
        tokens=count,
        bytes=nbytes,
        nll=nll,
        ppl=math.exp(nll),
        bits_per_byte=total / math.log(2) / nbytes,
    )


def result_record(
    model_dir: str | Path, data: str | Path, tokenizer_dir: str | Path, args: PplArgs, res: PplResult
) -> dict:
    """The JSON that `lt2 eval ppl` writes: the result, what it was computed on, and the recipe if known."""
    record = {"model": str(model_dir), "data": str(data), "tokenizer": str(tokenizer_dir)}
    record.update(asdict(args))
    record.update(asdict(res))
    recipe = Path(model_dir) / "recipe.yaml"
    if recipe.is_file():  # written by `lt2 train` next to the weights
        import yaml

        meta = yaml.safe_load(recipe.read_text()) or {}
        record["recipe"], record["scale"] = meta.get("name"), meta.get("scale")
    record["train_tokens"] = trained_tokens(Path(model_dir) / "metrics.jsonl")
    return record


def trained_tokens(metrics: Path) -> int | None:
    """Training tokens the model saw: the last `tokens` of the metrics.jsonl beside it (None without one)."""
    if not metrics.is_file():
        return None
    tokens = None
    for line in metrics.read_text().splitlines():
        if line.strip():
            tokens = json.loads(line).get("tokens", tokens)
    return tokens
