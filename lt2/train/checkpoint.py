"""Checkpoints: DCP (torch.distributed.checkpoint) for model, optimizer and RNG, the loop's state beside it,
written atomically, hashed, verified on load; and `export_checkpoint` (DCP -> safetensors + config.json).

Layout of a run directory (the --dump-dir, kept outside Snakemake-declared outputs):

    RUNDIR/
      metrics.jsonl
      checkpoints/
        step_00001000/
          .metadata  __0_0.distcp  __1_0.distcp ...   DCP, sharded as trained: "model" and "optim" (keys are
                                                      LoopedLM parameter names), "rng" {"rank_00000": ...}
                                                      (python, numpy, torch CPU and CUDA states per rank)
          train_state.json    schema, step, tokens, world_size, scheduler, data position (every stream)
          recipe.yaml         the resolved recipe (export rebuilds the model from its `model` section)
          manifest.json       written last: schema, step, size and sha256 of every other file
        .tmp_step_00002000/   a save in progress, or one killed half-way: never read, removed by the next save

A save writes everything into `.tmp_step_N`, hashes the files (split over ranks), writes the manifest,
fsyncs, and renames the folder to `step_N`: a checkpoint is complete iff its manifest exists and every file
matches its size and hash. Loading takes the newest complete checkpoint and warns about every newer one it
skips (half-written, truncated, corrupt). Only the newest `keep` complete checkpoints are kept. DCP reshards
on load, so a run can resume on a different number of ranks; RNG states are then re-seeded (warning), and
the data position is world-size independent (lt2.data.loader). Multi-node runs need RUNDIR on a shared
file system, as DCP's file writer does.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from lt2.files import atomic_dir, atomic_write_text, fsync_path, sha256_file
from lt2.train.distributed import DistInfo, barrier

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHECKPOINTS, PREFIX, TMP_PREFIX = "checkpoints", "step_", ".tmp_step_"
MANIFEST, TRAIN_STATE, RECIPE = "manifest.json", "train_state.json", "recipe.yaml"


# ------------------------------------------------------------------------------------- files
def _files(directory: Path) -> list[str]:
    """Every file under `directory` (relative, sorted), the manifest excluded."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def step_of(path: Path) -> int:
    return int(path.name.removeprefix(PREFIX))


def candidates(root: Path) -> list[Path]:
    """`step_*` folders under `root`, newest first (complete or not)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=step_of, reverse=True)


def check_files(directory: Path, entries: dict[str, dict[str, Any]]) -> str | None:
    """The first problem with `entries` ({name: {bytes, sha256}}) under `directory`, or None."""
    for name, meta in entries.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {meta['bytes']}"
        if sha256_file(path) != meta["sha256"]:
            return f"{name} does not match its sha256"
    return None


def read_manifest(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) or (None, why it is unusable)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return None, f"no {MANIFEST} (the save did not finish)"
    except ValueError:
        return None, f"{MANIFEST} is not valid JSON"
    if manifest.get("schema") != SCHEMA_VERSION:
        return None, f"schema {manifest.get('schema')} (this code reads {SCHEMA_VERSION})"
    return manifest, None


def verify(path: Path) -> str | None:
    """Why the checkpoint at `path` is unusable, or None when it is complete (single process)."""
    manifest, problem = read_manifest(path)
    return problem or check_files(path, manifest["files"])


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from `path`: itself, or the newest complete one of a run or checkpoints folder."""
    path = Path(path)
    if (path / MANIFEST).is_file() or path.name.startswith(PREFIX):
        problem = verify(path)
        if problem:
            raise ValueError(f"checkpoint {path} is unusable: {problem}")
        return path
    root = path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path
    for candidate in candidates(root):
        problem = verify(candidate)
        if problem is None:
            return candidate
        logger.warning("skipping checkpoint %s: %s", candidate, problem)
    raise ValueError(f"no complete checkpoint under {path}")


# --------------------------------------------------------------------------------------- RNG
def rng_state() -> bytes:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }
    return pickle.dumps(state)


def set_rng_state(blob: bytes) -> None:
    state = pickle.loads(blob)  # our own checkpoint, verified against its manifest
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------------------ checkpointer
class Checkpointer:
    """Save / find / load the checkpoints of one run directory; every method is collective over ranks."""

    def __init__(self, run_dir: str | Path, keep: int, info: DistInfo):
        self.root = Path(run_dir) / CHECKPOINTS
        self.keep, self.info = keep, info
        self.saved_step: int | None = None  # step of the checkpoint last saved or loaded (already on disk)

    def path(self, step: int) -> Path:
        return self.root / f"{PREFIX}{step:08d}"

    def _rng_key(self, rank: int | None = None) -> str:
        return f"rank_{self.info.rank if rank is None else rank:05d}"

    def _hash(self, directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
        """{name: {bytes, sha256}}, each rank hashing every world_size-th file."""
        mine = {
            name: {"bytes": (directory / name).stat().st_size, "sha256": sha256_file(directory / name)}
            for name in names[self.info.rank :: self.info.world_size]
        }
        parts = [None] * self.info.world_size
        if self.info.world_size > 1:
            dist.all_gather_object(parts, mine, group=self.info.control_group)
        else:
            parts = [mine]
        return {k: v for part in parts for k, v in part.items()}

    def _broadcast(self, obj: Any) -> Any:
        if self.info.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.info.control_group)
        return box[0]

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_state: dict[str, Any],
        recipe_yaml: str,
    ) -> Path:
        """Write checkpoint `step` atomically (see the module docstring); returns its folder."""
        final = self.path(step)
        if self.saved_step == step:
            return final
        tmp = self.root / f"{TMP_PREFIX}{step:08d}"
        if self.info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():  # a corrupt leftover of a killed run, skipped when it resumed
                shutil.rmtree(final)
            tmp.mkdir(parents=True)
        barrier(self.info)
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd, "rng": {self._rng_key(): rng_state()}}, checkpoint_id=tmp)
        if self.info.is_main:
            meta = {"schema": SCHEMA_VERSION, "step": step, "world_size": self.info.world_size}
            atomic_write_text(tmp / TRAIN_STATE, json.dumps({**meta, **train_state}, indent=1, sort_keys=True))
            atomic_write_text(tmp / RECIPE, recipe_yaml)
        barrier(self.info)
        files = self._hash(tmp, self._broadcast(_files(tmp) if self.info.is_main else None))
        if self.info.is_main:
            manifest = {"schema": SCHEMA_VERSION, "step": step, "world_size": self.info.world_size, "files": files}
            atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            os.rename(tmp, final)
            fsync_path(self.root)
            self._prune()
            logger.info("checkpoint %s written (%d files)", final, len(files) + 1)
        barrier(self.info)
        self.saved_step = step
        return final

    def _prune(self) -> None:
        complete = [p for p in candidates(self.root) if (p / MANIFEST).is_file()]
        for old in complete[self.keep :]:
            shutil.rmtree(old)
        for stale in self.root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)

    def find_latest(self) -> Path | None:
        """The newest complete checkpoint (same answer on every rank), warning about each newer one skipped."""
        found = self._broadcast([str(p) for p in candidates(self.root)] if self.info.is_main else None)
        for name in map(Path, found):
            manifest, problem = read_manifest(name)
            if problem is None:
                names = sorted(manifest["files"])
                mine = {n: manifest["files"][n] for n in names[self.info.rank :: self.info.world_size]}
                problems = [check_files(name, mine)]
                if self.info.world_size > 1:
                    problems = [None] * self.info.world_size
                    dist.all_gather_object(problems, check_files(name, mine), group=self.info.control_group)
                problem = next((p for p in problems if p), None)
            if problem is None:
                return name
            if self.info.is_main:
                logger.warning("checkpoint %s is incomplete or corrupt (%s): using the previous one", name, problem)
        return None

    def load(self, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Restore model, optimizer, scheduler and (same world size) RNG from `path`; returns its train state."""
        train_state = json.loads((path / TRAIN_STATE).read_text())
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
        same_world = train_state["world_size"] == self.info.world_size
        if same_world:
            state["rng"] = {self._rng_key(): b""}
        dcp.load(state, checkpoint_id=path)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        scheduler.load_state_dict(train_state["scheduler"])
        if same_world:
            set_rng_state(state["rng"][self._rng_key()])
        elif self.info.is_main:
            logger.warning(
                "resuming %d-rank checkpoint on %d ranks: RNG states are re-seeded, not restored",
                train_state["world_size"],
                self.info.world_size,
            )
        self.saved_step = train_state["step"]
        return train_state


# ------------------------------------------------------------------------------------ export
def export_checkpoint(src: str | Path, out_dir: str | Path, extra_files: dict[str, Path] | None = None) -> Path:
    """`lt2 export`: checkpoint -> out_dir/{model.safetensors, config.json} (LoopedLM.from_pretrained reads it).

    `src` is a checkpoint folder, or a run / checkpoints folder (its newest complete checkpoint). The model is
    rebuilt from the checkpoint's recipe.yaml on the CPU and its DCP shards are gathered into it. `extra_files`
    ({name: source}) are copied in too. out_dir appears at once, complete (temporary folder, then rename).
    Returns the checkpoint folder used.

    >>> export_checkpoint("runs/tiny_full", "models/tiny_full")
    """
    from lt2.model.looped import LoopedLM
    from lt2.recipe import load_recipe

    path = resolve_checkpoint(src)
    recipe = load_recipe(path / RECIPE)
    with torch.device("meta"):
        model = LoopedLM(recipe.model)
    model.to_empty(device="cpu")
    model.init_weights()  # non-persistent buffers (RoPE); every parameter is overwritten below
    state = model.state_dict()
    with warnings.catch_warnings():  # DCP warns that it loads in a single process: that is the intent here
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.load({"model": state}, checkpoint_id=path, no_dist=True)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, tmp / name)
    return path
