"""`lt2 train`: the thin entry — resolve and check the recipe, start the process group, train, close.

    lt2 train RECIPE [dot.overrides ...] --dump-dir RUNDIR [--out OUTDIR] [--nproc-per-node N|auto]
    srun lt2 train RECIPE --dump-dir RUNDIR --out OUTDIR          (SLURM, any number of nodes: a task per GPU)
    torchrun --nproc-per-node 8 -m lt2.cli train RECIPE --dump-dir RUNDIR --out OUTDIR

RUNDIR holds checkpoints and metrics.jsonl and is where a rerun resumes from; OUTDIR appears, complete, when
training finishes; each of its files gets a provenance sidecar, whose record was opened before training
started (the resolved recipe, the start time, git state and hashes of the recipe, chunks, validation file and
tokenizer as they were then). Exit status: 0 done, 2 bad recipe or arguments (before anything is built), 75 preempted
(checkpoint written: run the same command again to resume). --nproc-per-node keeps these statuses on one
node; torchrun reports any non-zero worker status as 1.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lt2.config import to_dict
from lt2.data.args import require_data
from lt2.recipe import Recipe, load_recipe, recipe_files
from lt2.report import provenance
from lt2.train.preemption import EXIT_PREEMPTED, Preemption

RECORDED_BY_LAUNCHER = "LT2_TRAIN_RECORDED_BY_LAUNCHER"


class _Stopped(Exception):
    """Training ended without outputs (preempted): leaves the provenance record without writing it."""

    def __init__(self, status: int) -> None:
        self.status = status


def output_files(out_dir: str | Path) -> list[Path]:
    """The files `--out` receives when training completes."""
    from lt2.model.looped import CONFIG_NAME, WEIGHTS_NAME
    from lt2.train.checkpoint import RECIPE
    from lt2.train.loop import METRICS

    return [Path(out_dir) / name for name in (WEIGHTS_NAME, CONFIG_NAME, METRICS, RECIPE)]


def input_files(recipe_path: str | Path, recipe: Recipe) -> list[Path]:
    """What a run reads: the recipe and its bases, the training chunks, the validation file, the tokenizer."""
    from lt2.data.loader import find_chunks

    data = recipe.data
    return [
        *recipe_files(recipe_path),
        *find_chunks(data.train_dir),
        *(Path(p) for p in (data.val_file, data.tokenizer) if p),
    ]


def run_train(
    recipe_path: str,
    overrides: list[str],
    dump_dir: str | Path,
    out_dir: str | Path | None = None,
    nproc_per_node: str = "1",
) -> int:
    """Train `recipe_path` (+ overrides) in `dump_dir`; returns the process exit status.

    nproc_per_node > 1 (or "auto": one per GPU) starts that many ranks on this node (lt2.train.launch),
    unless this process already is a rank (torchrun, srun, or the launcher itself).
    """
    from lt2.train.launch import launch_workers, resolve_nproc
    from lt2.train.metrics import setup_logging

    recipe = load_recipe(recipe_path, overrides)  # unknown keys / wrong types: ValueError naming the key
    require_data(recipe.data)  # the rest of the recipe was checked when it was loaded
    setup_logging()
    nproc = resolve_nproc(nproc_per_node)
    already_a_rank = "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    launcher = nproc > 1 and not already_a_rank
    if nproc > 1 and not launcher:
        logging.getLogger(__name__).warning("--nproc-per-node ignored: this process is already a rank of a launcher")
    # One process records: the launcher for the ranks it starts (it hashes the inputs before any rank waits on
    # the process group), else rank 0 of the job (torchrun, srun), or the one process.
    recording = out_dir is not None and (
        launcher or (provenance.is_main_process() and RECORDED_BY_LAUNCHER not in os.environ)
    )
    outputs = output_files(out_dir) if out_dir is not None else []
    inputs = input_files(recipe_path, recipe) if recording else []
    try:
        with provenance.record_if(recording, outputs, inputs=inputs, config=to_dict(recipe)):
            if launcher:
                argv = ["train", str(recipe_path), *overrides, "--dump-dir", str(dump_dir)]
                os.environ[RECORDED_BY_LAUNCHER] = "1"  # inherited by the ranks it starts
                try:
                    status = launch_workers(argv + (["--out", str(out_dir)] if out_dir is not None else []), nproc)
                finally:
                    del os.environ[RECORDED_BY_LAUNCHER]
            else:
                status = _train(recipe, dump_dir, out_dir)
            if status != 0:
                raise _Stopped(status)
    except _Stopped as stopped:
        return stopped.status
    return 0


def _train(recipe: Recipe, dump_dir: str | Path, out_dir: str | Path | None) -> int:
    """Train in this process (one rank); returns 0 or EXIT_PREEMPTED."""
    from lt2.train.distributed import destroy_distributed, init_distributed
    from lt2.train.loop import Trainer

    info = init_distributed()
    trainer = None
    try:
        with Preemption() as preemption:  # before the build: a signal while loading or compiling counts too
            trainer = Trainer(recipe, dump_dir, info)
            result = trainer.fit(out_dir, preemption)
    finally:
        if trainer is not None:
            trainer.close()
        destroy_distributed()
    return EXIT_PREEMPTED if result.status == "preempted" else 0
