"""lt2.data.tokenizer: byte-level BPE training, the Hub tokenizer path, and the one Tokenizer interface.

Checks: a trained BPE round-trips any text (non-ASCII, emoji, control characters, whitespace runs), has
`vocab_size` tokens with bos/eos/pad = 0/1/2, frames with BOS/EOS only on request, never turns special-token
strings inside text into special ids, trains on the chunks and not the val file, and is deterministic.
The `hf` kind is exercised offline twice: from a local directory laid out like the Hub repository, and
through huggingface_hub's real download call resolving from a Hub cache laid out like the real one; both
with a Llama-3-style tokenizer (bos/eos from tokenizer_config.json, pad = a reserved special token) and
HF_TOKEN set, which must not appear in any output or log.

    pytest tests/data/test_tokenizer.py
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from lt2.data.jsonl import dumps_record
from lt2.data.tokenizer import Tokenizer, make_tokenizer, train_bpe

ODD_TEXTS = [
    "To be, or not to be: that is the question.",
    "naïve café — 数据 🙂🙂 Ελληνικά",
    "tabs\tand\nnewlines\r\n  and   spaces   ",
    "digits 1234567890 and 3.14159",
    "\x00\x01 control bytes \u2028 line sep",
    "",
]


@pytest.fixture
def chunks(tmp_path: Path, texts_factory) -> Path:
    """A shuffled-corpus folder: 3 training chunks and a val file with a token found nowhere else."""
    out = tmp_path / "shuffled"
    out.mkdir()
    texts = texts_factory(120)
    for i in range(3):
        (out / f"toy.chunk.{i:02d}.jsonl").write_bytes(b"".join(dumps_record({"text": t}) for t in texts[i::3]))
    (out / "toy.val.jsonl").write_bytes(dumps_record({"text": "zyzzyvazyzzyvazyzzyva " * 50}))
    return out


@pytest.fixture
def bpe(chunks: Path, tmp_path: Path) -> Tokenizer:
    return train_bpe([chunks], 400, tmp_path / "tok")


def test_bpe_round_trip_and_special_ids(bpe: Tokenizer):
    assert (bpe.bos_id, bpe.eos_id, bpe.pad_id) == (0, 1, 2)
    assert bpe.vocab_size == 400
    for text in ODD_TEXTS:
        ids = bpe.encode(text)
        assert all(3 <= i < bpe.vocab_size for i in ids), text  # ordinary text never yields special ids
        assert bpe.decode(ids) == text
    framed = bpe.encode("loop state", bos=True, eos=True)
    assert framed[0] == bpe.bos_id and framed[-1] == bpe.eos_id and framed[1:-1] == bpe.encode("loop state")
    assert bpe.encode_batch(ODD_TEXTS, eos=True) == [bpe.encode(t, eos=True) for t in ODD_TEXTS]
    assert len(bpe.encode("loop loop loop state")) < len("loop loop loop state")  # merges were learned


def test_special_token_text_stays_text(bpe: Tokenizer):
    text = "a page that quotes <|end_of_text|> and <|begin_of_text|> literally"
    ids = bpe.encode(text)
    assert bpe.eos_id not in ids and bpe.bos_id not in ids
    assert bpe.decode(ids) == text
    assert bpe.decode([bpe.bos_id, *bpe.encode("hi"), bpe.eos_id]) == "<|begin_of_text|>hi<|end_of_text|>"


def test_bpe_trains_on_chunks_only_and_is_deterministic(bpe: Tokenizer, chunks: Path, tmp_path: Path):
    assert len(bpe.encode("zyzzyva")) > 2  # the val-only word was never merged
    again = train_bpe(sorted(chunks.glob("*.chunk.*.jsonl")), 400, tmp_path / "again")  # explicit files
    assert (tmp_path / "tok" / "tokenizer.json").read_bytes() == (tmp_path / "again" / "tokenizer.json").read_bytes()
    meta = json.loads((tmp_path / "tok" / "lt2_tokenizer.json").read_text())
    assert meta["kind"] == "bpe" and meta["vocab_size"] == 400 and meta["pad_token"] == "<|pad|>"
    assert Tokenizer.load(tmp_path / "tok").encode("state") == again.encode("state")


def test_small_corpus_gives_a_smaller_vocab_with_a_warning(chunks: Path, tmp_path: Path, caplog):
    tok = train_bpe([chunks], 5000, tmp_path / "big")  # ten distinct words cannot fill 5000 tokens
    assert tok.vocab_size < 5000 and "fewer than --vocab-size 5000" in caplog.text
    assert json.loads((tmp_path / "big" / "lt2_tokenizer.json").read_text())["vocab_size"] == tok.vocab_size


def test_bpe_bad_arguments(chunks: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="--vocab-size must be >= 259"):
        train_bpe([chunks], 100, tmp_path / "t")
    with pytest.raises(ValueError, match=r"holds no \*\.chunk\.\*\.jsonl"):
        train_bpe([tmp_path], 400, tmp_path / "t")
    with pytest.raises(ValueError, match="neither a file nor a directory"):
        train_bpe([tmp_path / "missing"], 400, tmp_path / "t")
    with pytest.raises(ValueError, match=re.escape("unknown tokenizer kind 'wordpiece'; choose one of bpe, hf")):
        make_tokenizer("wordpiece", tmp_path / "t")
    with pytest.raises(ValueError, match="is not a tokenizer directory"):
        Tokenizer.load(tmp_path)


def test_load_rejects_inconsistent_metadata(bpe: Tokenizer, tmp_path: Path):
    meta_file = tmp_path / "tok" / "lt2_tokenizer.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(meta | {"eos_id": 7}))
    with pytest.raises(ValueError, match=re.escape("says '<|end_of_text|>' has id 7")):
        Tokenizer.load(tmp_path / "tok")


# ----------------------------------------------------------------------------------------------- hf kind
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|eot_id|>"]


def write_llama_like_repo(repo: Path, texts: list[str]) -> None:
    """tokenizer.json + tokenizer_config.json as in meta-llama/Meta-Llama-3-8B: specials after the BPE ids."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet, show_progress=False))
    tok.add_special_tokens(LLAMA_SPECIALS)  # appended: ids 300..303, like Llama-3's 128000..
    repo.mkdir(parents=True, exist_ok=True)
    tok.save(str(repo / "tokenizer.json"))
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "model_max_length": 1000000}
    (repo / "tokenizer_config.json").write_text(json.dumps(config))


def check_llama_like(tok: Tokenizer, out: Path, repo: Path) -> None:
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (300, 301, 302)
    assert tok.vocab_size == 304
    assert (out / "tokenizer.json").read_bytes() == (repo / "tokenizer.json").read_bytes()  # the Hub's file as is
    assert tok.decode(tok.encode("naïve 数据 state")) == "naïve 数据 state"


def test_hf_from_local_repo_copy(tmp_path: Path, texts_factory):
    repo = tmp_path / "Meta-Llama-3-8B"
    write_llama_like_repo(repo, texts_factory(50))
    out = tmp_path / "tok"
    tok = make_tokenizer("hf", out, name="meta-llama/Meta-Llama-3-8B", from_dir=repo)
    check_llama_like(tok, out, repo)
    meta = json.loads((out / "lt2_tokenizer.json").read_text())
    assert meta["kind"] == "hf" and meta["source"] == "meta-llama/Meta-Llama-3-8B"


def test_hf_through_hub_cache_never_leaks_token(tmp_path: Path, texts_factory, monkeypatch, capfd, caplog):
    import huggingface_hub.constants as hub

    commit = "8cde5ca8380496c9a6cc7ef3a8b46a0372a1d920"
    cache = tmp_path / "hub-cache"
    snapshot = cache / "models--meta-llama--Meta-Llama-3-8B" / "snapshots" / commit
    write_llama_like_repo(snapshot, texts_factory(50))
    (cache / "models--meta-llama--Meta-Llama-3-8B" / "refs").mkdir()
    (cache / "models--meta-llama--Meta-Llama-3-8B" / "refs" / "main").write_text(commit)
    # The Hub is unreachable here: huggingface_hub's offline mode resolves `main` from the cache instead.
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    secret = "hf_TESTsecretTOKENthatMustNotLeak"
    monkeypatch.setenv("HF_TOKEN", secret)
    caplog.set_level(logging.DEBUG)

    from lt2.cli import main

    out = tmp_path / "tok"
    assert main(["data", "tokenizer", "--kind", "hf", "--name", "meta-llama/Meta-Llama-3-8B", "--out", str(out)]) == 0
    check_llama_like(Tokenizer.load(out), out, snapshot)
    assert json.loads((out / "lt2_tokenizer.json").read_text())["revision"] == commit
    captured = capfd.readouterr()
    written = b"".join(p.read_bytes() for p in out.iterdir())
    assert secret not in captured.out + captured.err + caplog.text and secret.encode() not in written
