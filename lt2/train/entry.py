"""`lt2 train`: the thin entry — resolve and check the recipe, start the process group, train, close.

    lt2 train RECIPE [dot.overrides ...] --dump-dir RUNDIR [--out OUTDIR]
    torchrun --nproc-per-node 8 -m lt2.cli train RECIPE --dump-dir RUNDIR --out OUTDIR
    srun lt2 train RECIPE --dump-dir RUNDIR --out OUTDIR          (SLURM: one task per GPU)

RUNDIR holds checkpoints and metrics.jsonl and is where a rerun resumes from; OUTDIR appears, complete, when
training finishes. Exit status: 0 done, 2 bad recipe or arguments (before anything is built), 75 preempted
(checkpoint written: run the same command again to resume).
"""

from __future__ import annotations

from pathlib import Path

from lt2.config import load_recipe
from lt2.train.args import validate_run
from lt2.train.preemption import EXIT_PREEMPTED


def run_train(recipe_path: str, overrides: list[str], dump_dir: str | Path, out_dir: str | Path | None = None) -> int:
    """Train `recipe_path` (+ overrides) in `dump_dir`; returns the process exit status."""
    from lt2.train.distributed import destroy_distributed, init_distributed
    from lt2.train.loop import Trainer
    from lt2.train.metrics import setup_logging

    recipe = load_recipe(recipe_path, overrides)  # unknown keys / wrong types: ValueError naming the key
    validate_run(recipe.data, recipe.train)
    setup_logging()
    info = init_distributed()
    trainer = None
    try:
        trainer = Trainer(recipe, dump_dir, info)
        result = trainer.fit(out_dir)
    finally:
        if trainer is not None:
            trainer.close()
        destroy_distributed()
    return EXIT_PREEMPTED if result.status == "preempted" else 0
