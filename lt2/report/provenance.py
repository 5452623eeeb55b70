"""Provenance sidecars: `<output>.prov.json` says how a file under results/ or figures/ was made.

One record per output file (or output directory):

    command      the `lt2 ...` command line that produced it
    git          commit, dirty flag and sha256 of `git diff HEAD` of the source tree (generated folders excluded)
    config       the resolved configuration the command ran with, and `config_sha256` of its canonical JSON
    inputs       path, sha256 and whether the input had a sidecar of its own (so `lt2 audit` can demand one)
    output       path and sha256 of the file the record describes (catches edits of the output itself)
    packages     versions of torch, triton, fla, lm-eval, snakemake and lt2 (None where not installed)
    hardware     CPU model and count, GPU models and count
    started/ended, host

Usage, from a command that writes `out.json` from `data.jsonl`:

    with provenance.record(["out.json"], inputs=["data.jsonl"], config={"seq_len": 256}):
        ...write out.json...

The record opens before the command works: start time, git state, hardware and input hashes are those of the
moment it started (an input changed while it ran fails the command instead of being recorded). Sidecars are
written only after the body succeeded, and stale sidecars of the outputs are removed when it starts, so a
crashed command never leaves a record that describes a different file.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# re-exported: commands write their outputs through provenance.atomic_write_text/_bytes inside `record`
from lt2.files import atomic_write_bytes as atomic_write_bytes
from lt2.files import atomic_write_text as atomic_write_text
from lt2.files import sha256_file as sha256_file

SUFFIX = ".prov.json"
SCHEMA_VERSION = 1
# Distribution names whose versions every record carries (the DESIGN's list, plus lt2 itself).
PACKAGES = ("torch", "triton", "fla-core", "flash-linear-attention", "lm_eval", "snakemake", "lt2")
# Generated folders: changes there are results, not code, so they do not make the source tree dirty.
GENERATED = ("results", "figures", "data", "runs", "logs", ".snakemake")
SNAKEMAKE_MARKER = ".snakemake_timestamp"  # Snakemake touches it inside directory outputs when their job ends

PathLike = str | os.PathLike


# ------------------------------------------------------------------ writing files
def sidecar(path: PathLike) -> Path:
    """The provenance file of `path`: `results/x.json` -> `results/x.json.prov.json`."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


# ------------------------------------------------------------------------ hashing
def sha256_path(path: PathLike) -> str:
    """sha256 of a file, or of a directory as the sorted list of (relative path, file sha256).

    Sidecars inside a directory are left out (writing a record must not change the hash it records), and so
    is the empty marker Snakemake drops into a directory output after its job.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p)):
        h.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return h.hexdigest()


def _ignored(path: Path) -> bool:
    # HF datasets writes derived `cache-*.arrow` files into a saved dataset's folder whenever a reader maps
    # or filters it (lm-eval does): caches, not data, so they neither change a folder's hash nor its input check
    hf_cache = path.name.startswith("cache-") and path.suffix == ".arrow"
    return path.name.endswith(SUFFIX) or path.name == SNAKEMAKE_MARKER or hf_cache


def config_sha256(config: Any) -> str:
    """Hash of the canonical JSON of a config (sorted keys, no whitespace), so equal configs hash equal."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def display_path(path: PathLike) -> str:
    """Relative to the working directory (the repository root for workflow jobs) when inside it.

    Records then stay valid when the repository is cloned elsewhere, and name no machine's folders.
    """
    path = Path(path)
    try:
        return Path(os.path.relpath(path.resolve(), Path.cwd().resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return path.resolve().as_posix()


# ------------------------------------------------------------- environment facts
def git_state() -> dict[str, Any]:
    """Commit, dirty flag and the hash of the uncommitted diff of the source tree, asked of git now (a command
    records the state it started from: `record` calls this on entry).

    A copy of the tree without its .git (a GPU node given the working tree only) names its commit in
    $LT2_GIT_COMMIT, recorded as `commit` with `source: "env"` and unknown dirtiness; otherwise None.
    """

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout

    try:
        if shutil.which("git") is None:
            raise FileNotFoundError("git")
        commit = git("rev-parse", "HEAD").strip()
    except (FileNotFoundError, subprocess.CalledProcessError):
        declared = os.environ.get("LT2_GIT_COMMIT") or None
        return {"commit": declared, "dirty": None, "diff_sha256": None, "source": "env" if declared else None}
    exclude = [f":(exclude){d}" for d in GENERATED]
    status = git("status", "--porcelain", "--", ".", *exclude)
    diff = git("diff", "HEAD", "--binary", "--", ".", *exclude)
    return {
        "commit": commit,
        "dirty": bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        # untracked files change behaviour too, but have no diff: name them so a reader knows
        "untracked": [line[3:] for line in status.splitlines() if line.startswith("??")],
        "source": "git",
    }


@functools.cache
def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_models() -> list[str]:
    # nvidia-smi answers without initialising CUDA in this process; torch is the fallback when it already
    # runs here (a wrapped command that used the GPU has imported it).
    if shutil.which("nvidia-smi"):
        # the job's own GPUs: SLURM and torchrun restrict them through CUDA_VISIBLE_DEVICES
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and not visible.strip():
            return []
        select = ["-i", visible] if visible else []
        out = subprocess.run(
            ["nvidia-smi", *select, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        if out.returncode == 0:
            return [line.strip() for line in out.stdout.splitlines() if line.strip()]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


@functools.cache
def hardware() -> dict[str, Any]:
    gpus = _gpu_models()
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "gpu_count": len(gpus),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------ records
def input_entry(path: PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"input {path} does not exist; cannot record its provenance")
    return {
        "path": display_path(path),
        "sha256": sha256_path(path),
        "kind": "dir" if path.is_dir() else "file",
        "has_provenance": sidecar(path).is_file(),
    }


def _fingerprint(path: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of a file or of every file in a directory: cheap to take twice, and it
    changes when a file is rewritten, so an input that changed while a command ran is caught without
    hashing it again."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p))
    return [(f.relative_to(path).as_posix() if f != path else "", *_stat(f)) for f in files]


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def read_provenance(path: PathLike) -> dict[str, Any]:
    """The record of `path` (a file with a sidecar); ValueError naming the file when there is none."""
    side = sidecar(path)
    if not side.is_file():
        raise ValueError(f"{path} has no provenance record ({side.name} is missing)")
    return json.loads(side.read_text())


@dataclass
class Recording:
    """The record of one command, opened before it works. Its body may add facts learnt while working
    (token counts, devices) to `extra`; everything else was taken on entry."""

    outputs: list[Path]
    inputs: list[dict[str, Any]]  # input_entry of each input, hashed on entry
    config: Any
    command: list[str]
    started: str
    git: dict[str, Any]
    hardware: dict[str, Any]
    host: str
    extra: dict[str, Any] = field(default_factory=dict)

    def sidecar_of(self, output: Path, ended: str) -> dict[str, Any]:
        rec = {
            "schema": SCHEMA_VERSION,
            "output": {"path": display_path(output), "sha256": sha256_path(output)},
            "command": shlex.join(self.command),
            "inputs": self.inputs,
            "config": self.config,
            "config_sha256": config_sha256(self.config),
            "git": self.git,
            "packages": package_versions(),
            "hardware": self.hardware,
            "host": self.host,
            "started": self.started,
            "ended": ended,
        }
        if self.extra:
            rec["extra"] = self.extra
        return rec


@contextmanager
def record(
    outputs: Iterable[PathLike],
    inputs: Iterable[PathLike] = (),
    config: Any = None,
    command: list[str] | None = None,
) -> Iterator[Recording]:
    """The provenance boundary of a command: open it before the command starts working.

    On entry: stale sidecars of `outputs` are removed; the start time, git state, hardware, host and the
    sha256 of every input are taken. The body does the work and writes `outputs` (atomically). On success:
    every output must exist and every input must be as it was on entry (else ValueError naming it), then the
    outputs are hashed and one sidecar per output is written. On an exception nothing is written.

    outputs: files or directories the command writes        inputs: files or directories it reads
    config:  the resolved configuration it runs with (JSON-able)   command: argv (default `lt2 <sys.argv>`)
    """
    outs = [Path(p) for p in outputs]
    for out in outs:
        sidecar(out).unlink(missing_ok=True)
    ins = [Path(p) for p in inputs]
    rec = Recording(
        outputs=outs,
        inputs=[input_entry(p) for p in ins],
        config=config,
        command=command if command is not None else ["lt2", *sys.argv[1:]],
        started=_now(),
        git=git_state(),
        hardware=hardware(),
        host=socket.gethostname(),
    )
    before = [_fingerprint(p) for p in ins]
    yield rec
    for path, fingerprint in zip(ins, before, strict=True):
        if not path.exists() or _fingerprint(path) != fingerprint:
            raise ValueError(f"input {path} changed while the command ran; no provenance was written")
    missing = [str(out) for out in outs if not out.exists()]
    if missing:
        raise ValueError(f"the command finished without writing {', '.join(missing)}")
    ended = _now()
    for out in outs:
        atomic_write_text(
            sidecar(out), json.dumps(rec.sidecar_of(out, ended), indent=2, sort_keys=True, default=str) + "\n"
        )


def record_if(
    when: bool, outputs: Iterable[PathLike], inputs: Iterable[PathLike] = (), config: Any = None
) -> AbstractContextManager[Recording | None]:
    """`record(...)` when `when`, else a block that records nothing and yields None: a command run without an
    output file, or a rank other than 0 of a job whose rank 0 writes the results."""
    return record(outputs, inputs=inputs, config=config) if when else nullcontext()


def is_main_process() -> bool:
    """Whether this process writes its job's results: rank 0 under torchrun or srun, or a process of no job."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0
