"""`lt2 train`: the thin entry — resolve and check the recipe, start the process group, train, close.

    lt2 train RECIPE [dot.overrides ...] --dump-dir RUNDIR [--out OUTDIR] [--nproc-per-node N|auto]
    srun lt2 train RECIPE --dump-dir RUNDIR --out OUTDIR          (SLURM, any number of nodes: a task per GPU)
    torchrun --nproc-per-node 8 -m lt2.cli train RECIPE --dump-dir RUNDIR --out OUTDIR

RUNDIR holds checkpoints and metrics.jsonl and is where a rerun resumes from; OUTDIR appears, complete, when
training finishes. Exit status: 0 done, 2 bad recipe or arguments (before anything is built), 75 preempted
(checkpoint written: run the same command again to resume). --nproc-per-node keeps these statuses on one
node; torchrun reports any non-zero worker status as 1.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lt2.config import load_recipe
from lt2.train.args import validate_run
from lt2.train.preemption import EXIT_PREEMPTED, Preemption


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
    from lt2.train.distributed import destroy_distributed, init_distributed
    from lt2.train.launch import launch_workers, resolve_nproc
    from lt2.train.loop import Trainer
    from lt2.train.metrics import setup_logging

    recipe = load_recipe(recipe_path, overrides)  # unknown keys / wrong types: ValueError naming the key
    validate_run(recipe.data, recipe.train)
    setup_logging()
    nproc = resolve_nproc(nproc_per_node)
    already_a_rank = "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if nproc > 1 and not already_a_rank:
        argv = ["train", str(recipe_path), *overrides, "--dump-dir", str(dump_dir)]
        return launch_workers(argv + (["--out", str(out_dir)] if out_dir is not None else []), nproc)
    if nproc > 1:
        logging.getLogger(__name__).warning("--nproc-per-node ignored: this process is already a rank of a launcher")
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
