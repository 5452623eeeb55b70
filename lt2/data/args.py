"""Arguments of the training data: where the shuffled chunks, the validation file and the tokenizer are, and
how they are packed into batches (lt2.data.loader)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataArgs:
    train_dir: str = ""  # folder of shuffled chunk files `{dataset}.chunk.{i:02d}.jsonl`
    val_file: str = ""  # held-out `{dataset}.val.jsonl`; empty disables validation
    tokenizer: str = ""  # tokenizer directory (tokenizer.json), see lt2.data.tokenizer
    seq_len: int = 4096  # tokens per training sequence (packed, BOS/EOS between documents)
    batch_size: int = 8  # sequences per rank per micro-step
    doc_mask: bool = False  # attention/state never crosses a packed document boundary
    # Packed streams the chunk files are cut into (each chunk into streams / n_chunks line-aligned byte
    # ranges); stream s belongs to rank s % world_size. 0: the smallest multiple of the chunk count that
    # the world size divides. Fixed at the first start and kept in the checkpoint, so that a run can
    # resume on any number of ranks up to this count.
    streams: int = 0
    prefetch: int = 2  # batches packed ahead in a background thread (0: in the training thread)


def require_data(data: DataArgs) -> None:
    """A run that reads data (`lt2 train`) needs its chunk folder and tokenizer; ValueError naming the key."""
    if not data.train_dir:
        raise ValueError("data.train_dir is empty: set the folder of `{dataset}.chunk.{i:02d}.jsonl` files")
    if not data.tokenizer:
        raise ValueError("data.tokenizer is empty: set the tokenizer directory")
