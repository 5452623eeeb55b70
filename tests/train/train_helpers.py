"""Helpers of the training-engine tests: the synthetic corpus, tiny recipes, and `lt2 train` run helpers.

Training runs go through `lt2 train` in a subprocess with one intra-op thread, the same for single-rank and
torchrun runs, so that runs meant to match compare bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "assets" / "losses" / "tiny_train.json"
# Metrics that a resumed run must reproduce exactly (timings and memory are not deterministic).
DETERMINISTIC = ("step", "loss", "lr", "grad_norm", "tokens", "data_fingerprint")
STEPS, EVERY = 16, 3  # checkpoints at 3, 6, 9, 12, 15 and the final 16
MALFORMED = [b"{not json", b'{"id": "no text"}', b'{"text": 17}', b'{"text": "caf\xe9 latin-1"}', b"[1, 2]"]


@dataclass(frozen=True)
class Corpus:
    train_dir: Path
    val_file: Path
    tokenizer: Path
    docs: list[str]  # every valid training document, chunk by chunk in file order
    malformed: int  # malformed lines planted in the chunks


def make_docs(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "an", "el", "or", "ish", "ve"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    docs = []
    for _ in range(n):
        vocab = words[: rng.randint(30, 300)]  # documents differ in how rich their vocabulary is
        sentences = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 14))) for _ in range(rng.randint(1, 8))]
        docs.append(". ".join(s.capitalize() for s in sentences) + ".")
    return docs


def recipe_text(corpus: Corpus, **sections) -> str:
    """A tiny recipe: dim 32, 2 layers x 2 loops, seq 32, 2 sequences per rank, fp32, no compile."""
    model = {"vocab_size": 384, "dim": 32, "n_layers": 2, "loop_count": 2, "n_heads": 4, "n_kv_heads": 4,
             "head_dim": 8, "ffn_dim": 64, "max_seqlen": 64, "pattern": "full", "use_residual": True}  # fmt: skip
    data = {"train_dir": str(corpus.train_dir), "val_file": str(corpus.val_file), "tokenizer": str(corpus.tokenizer),
            "seq_len": 32, "batch_size": 2, "prefetch": 2}  # fmt: skip
    train = {"steps": STEPS, "dtype": "fp32", "compile": False, "log_every": 1, "val_every": 8, "val_tokens": 256,
             "optim": {"lr": 3e-3, "warmup_steps": 3}, "checkpoint": {"every": EVERY, "keep": 10}}  # fmt: skip
    recipe = {"name": "tiny_train", "model": model, "data": data, "train": train}
    for key, value in sections.items():
        recipe[key] = {**recipe[key], **value}
    return json.dumps(recipe, indent=1)  # JSON is YAML


def train_command(
    recipe: Path, run_dir: Path, *overrides: str, nproc: int = 1, out: Path | None = None, launcher: str = "torchrun"
) -> list[str]:
    """`lt2 train` for `nproc` ranks, started by torchrun or by lt2's own launcher (--nproc-per-node)."""
    cli = ["-m", "lt2.cli", "train", str(recipe), *overrides, "--dump-dir", str(run_dir)]
    if out is not None:
        cli += ["--out", str(out)]
    if nproc == 1:
        return [sys.executable, *cli]
    if launcher == "lt2":
        return [sys.executable, *cli, "--nproc-per-node", str(nproc)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(_free_port()), *cli]  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("RANK", None)  # never inherit a launcher's rank
    return env


def run_train(recipe: Path, run_dir: Path, *overrides: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    """Run `lt2 train` to the end (kw: nproc, out, launcher); stdout and stderr together in .stdout."""
    cmd = train_command(recipe, run_dir, *overrides, **kw)
    return subprocess.run(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def start_train(recipe: Path, run_dir: Path, *overrides: str, **kw) -> subprocess.Popen:
    """Start `lt2 train` in the background (stop it with kill_all or a signal)."""
    cmd = train_command(recipe, run_dir, *overrides, **kw)
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> int:
    """Poll metrics.jsonl until it logs `step` (returns the last logged step); fails if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = last_step(run_dir)
        if last >= step:
            return last
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before step {step}:\n{proc.stdout.read()}")
        time.sleep(0.005)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def last_step(run_dir: Path) -> int:
    records = read_metrics(run_dir / "metrics.jsonl")
    return max((r["step"] for r in records if "loss" in r), default=0)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in their own sessions, out of reach of killpg)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL a run and every process it started (workers first, so the launcher cannot restart them)."""
    for pid in [*reversed(descendants(proc.pid)), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a kill (the resumed run drops it)
    return out


def curve(records: list[dict]) -> list[dict]:
    """The deterministic part of a metrics log: training records (DETERMINISTIC keys) and validation records."""
    out = []
    for r in records:
        if "loss" in r:
            out.append({k: r[k] for k in DETERMINISTIC})
        elif "val_loss" in r:
            out.append({"step": r["step"], "val_loss": r["val_loss"], "val_tokens": r["val_tokens"]})
    return out


def checked(proc, expect: int = 0) -> str:
    assert proc.returncode == expect, f"exit {proc.returncode} (expected {expect}):\n{proc.stdout[-6000:]}"
    return proc.stdout
