"""Configuration of a distillation: the teacher, the student's layout and the three stages' runs.

One YAML per scale under config/distill/ (the same `base:` mechanism as recipes), resolved by
`load_distill(path, overrides)`: dataclass defaults -> YAML -> dot-list overrides, in struct mode.

Defaults are the paper-scale recipe of the released Ouro hybrid (fla-org's hybrid distillation):
stage 1 attention-output alignment (MSE, every layer linear, lr 1e-3, length 512, ~100M tokens);
stage 2 full-vocabulary KL with the full-attention layers back (constant lr 7e-6, 1e-4 for the linear
mixers, length 4096, ~600M tokens); stage 3 a cross-entropy fine-tune of the student.

Which layers stay full attention is not public. `student.select` chooses:
- "pattern": `student.pattern` (default `interleave:4:1:gdn:full`, the paper's Full+GDN ratio of 4 linear
  to 1 full: layers 4, 9, 14, 19 of Ouro's 24);
- "list": exactly `student.full_layers`;
- "kl": KL-guided: after stage 1, restore one layer at a time to the teacher's attention, score the KL to
  the teacher on `student.select_tokens` held-out tokens, and keep the `student.n_full` layers whose
  restoration lowers it most (lt2/distill/select.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lt2.config import resolve
from lt2.data.args import DataArgs, require_data
from lt2.train.args import OptimArgs, TrainArgs

STAGES = ("stage1", "stage2", "stage3")
TEACHER_SOURCES = ("lt2", "ouro")
SELECTIONS = ("pattern", "list", "kl")


@dataclass
class TeacherArgs:
    source: str = "ouro"  # ouro: a Hugging Face Ouro checkpoint (Hub or local folder); lt2: a model folder of ours
    hub_id: str = "ByteDance/Ouro-1.4B"  # Hub repository of an `ouro` teacher
    revision: str = "main"  # its pinned revision (commit hash or tag); the resolved commit is recorded


@dataclass
class StudentArgs:
    select: str = "pattern"  # pattern | list | kl (module docstring)
    pattern: str = "interleave:4:1:gdn:full"  # select=pattern: any layout of lt2.model.pattern
    full_layers: list[int] = field(default_factory=list)  # select=list: layers kept full attention
    n_full: int = 4  # select=kl: full-attention layers kept
    select_tokens: int = 65536  # select=kl: held-out tokens each candidate is scored on
    linear_mixer: str = "gdn"  # mixer of the converted layers for select=list|kl
    conv_size: int = 0  # short convolution of the linear mixers (the recipe: none)
    use_gate: bool = True  # output gate of the linear mixers (the recipe: on)
    seed: int = 1234  # init seed of what the student does not copy (gates, A_log, dt_bias, ...)


@dataclass
class StageArgs:
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    linear_lr: float | None = None  # lr of the linear mixers' parameters; None: train.optim.lr
    kl_chunk: int = 4096  # stage 2: tokens per chunk of the full-vocabulary KL


def _stage(seq_len: int, lr: float, steps: int, warmup: int, min_ratio: float, linear_lr: float | None = None):
    optim = OptimArgs(lr=lr, warmup_steps=warmup, lr_min_ratio=min_ratio, weight_decay=0.0)
    return StageArgs(
        data=DataArgs(seq_len=seq_len, batch_size=8),
        train=TrainArgs(steps=steps, optim=optim, val_every=1000),
        linear_lr=linear_lr,
    )


@dataclass
class DistillArgs:
    name: str = ""
    scale: str = "1B"
    teacher: TeacherArgs = field(default_factory=TeacherArgs)
    student: StudentArgs = field(default_factory=StudentArgs)
    # On 8 ranks: 3000 x 512 x 8 x 8 = 98M tokens; 2300 x 4096 x 8 x 8 = 603M; stage 3 a tenth of stage 2
    stage1: StageArgs = field(default_factory=lambda: _stage(512, 1e-3, 3_000, 100, 0.01))
    stage2: StageArgs = field(default_factory=lambda: _stage(4096, 7e-6, 2_300, 0, 1.0, linear_lr=1e-4))
    stage3: StageArgs = field(default_factory=lambda: _stage(4096, 7e-6, 230, 0, 1.0))

    def stage(self, name: str) -> StageArgs:
        if name not in STAGES:
            raise ValueError(f"unknown distillation stage {name!r}; valid: {', '.join(STAGES)}")
        return getattr(self, name)


def validate_distill(args: DistillArgs, stage: str) -> None:
    """Cross-field checks; ValueError naming the key and the valid choices (before anything is built)."""
    if args.teacher.source not in TEACHER_SOURCES:
        raise ValueError(f"teacher.source={args.teacher.source!r}; valid: {', '.join(TEACHER_SOURCES)}")
    if args.student.select not in SELECTIONS:
        raise ValueError(f"student.select={args.student.select!r}; valid: {', '.join(SELECTIONS)}")
    if args.student.select == "list" and not args.student.full_layers:
        raise ValueError("student.select=list needs student.full_layers (the layers kept full attention)")
    if args.student.select == "kl" and args.student.n_full < 0:
        raise ValueError(f"student.n_full={args.student.n_full} must be >= 0")
    run = args.stage(stage)
    require_data(run.data)  # the run's own checks need the model: lt2.distill.stages.check_run
    if run.linear_lr is not None and run.linear_lr <= 0:
        raise ValueError(f"{stage}.linear_lr={run.linear_lr} must be > 0 (or null: the stage's lr)")
    if run.kl_chunk < 1:
        raise ValueError(f"{stage}.kl_chunk={run.kl_chunk} must be >= 1")


def load_distill(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DistillArgs:
    """Resolve a distillation YAML (with its `base:` files) and dot-list overrides (`stage1.train.steps=10`)."""
    from lt2.recipe import recipe_layers

    args = resolve(DistillArgs, *recipe_layers(path), overrides=overrides)
    if not args.name:
        args.name = Path(path).stem
    return args
