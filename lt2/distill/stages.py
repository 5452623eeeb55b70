"""`lt2 distill <stage>`: one distillation stage as a training run on the project's engine.

    lt2 distill stage1 CONFIG [overrides] --teacher DIR --dump-dir RUN1 --out OUT1
    lt2 distill stage2 CONFIG [overrides] --teacher DIR --init OUT1 --dump-dir RUN2 --out OUT2
    lt2 distill stage3 CONFIG [overrides] --init OUT2 --dump-dir RUN3 --out OUT3

Each stage is `lt2.train.loop.Trainer` with a distillation objective (lt2/distill/objectives.py): the same
packed data loader, FSDP2, per-block compile, DCP checkpoints with exact resume, preemption (exit 75) and
validation (the student's CE on the held-out file) as pre-training. What the stage trains is the student
(`.lm`); the teacher is rebuilt from its folder on every (re)start, so a resumed stage continues exactly.

- stage1: student = teacher with every layer linear (q/k/v/o copied); AttentionAlignment; only the linear
  mixers train; no FSDP unit but those mixers and the root (their blocks never run).
- stage2: student = teacher with the selected layers kept full attention and the stage-1 linear mixers
  (lt2/distill/select.py; the KL-guided choice is cached in RUN2/selection.json); LogitDistillation; every
  weight trains, the linear mixers at `stage2.linear_lr`.
- stage3: the stage-2 student fine-tuned with the pre-training cross-entropy (no teacher).

TEACHER is one of our model folders or an Ouro folder (config.json with model_type "ouro"; see `lt2 convert`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lt2.config import ModelArgs, to_dict
from lt2.distill.args import DistillArgs, StageArgs, load_distill, validate_distill
from lt2.distill.losses import chunk_kl_and_grad
from lt2.distill.objectives import AttentionAlignment, LogitDistillation
from lt2.distill.select import select_by_kl, student_from_stage1
from lt2.distill.student import build_student, full_layer_pattern
from lt2.model.looped import LoopedLM
from lt2.recipe import Recipe
from lt2.train.distributed import DistInfo, parallelize

logger = logging.getLogger(__name__)

SELECTION = "selection.json"
OUTPUT_FILES = ("model.safetensors", "config.json", "metrics.jsonl", "recipe.yaml")  # what --out holds


def load_teacher(directory: str | Path, device: torch.device) -> LoopedLM:
    """Our model folder, or an Ouro Hugging Face folder (converted on load), in fp32 and eval mode."""
    from lt2.distill.ouro import load_ouro

    directory = Path(directory)
    config = directory / "config.json"
    if not config.is_file():
        raise ValueError(f"teacher {directory} has no config.json")
    if json.loads(config.read_text()).get("model_type") == "ouro":
        return load_ouro(directory, device=device).eval()
    return LoopedLM.from_pretrained(directory, device=device).eval()


def linear_settings(args: DistillArgs) -> dict:
    return {"conv_size": args.student.conv_size, "use_gate": args.student.use_gate}


def stage2_pattern(args: DistillArgs, teacher: LoopedLM, stage1: LoopedLM, run_dir: Path, info: DistInfo) -> str:
    """The student's layout for stages 2 and 3 (module docstring of lt2.distill.args)."""
    student, n_layers = args.student, teacher.args.n_layers
    if student.select == "pattern":
        return student.pattern
    if student.select == "list":
        return full_layer_pattern(n_layers, student.full_layers, student.linear_mixer)
    cached = run_dir / SELECTION
    if cached.is_file():  # a resumed stage keeps its choice
        return full_layer_pattern(n_layers, json.loads(cached.read_text())["full_layers"], student.linear_mixer)
    from lt2.data.loader import validation_rows
    from lt2.data.tokenizer import Tokenizer
    from lt2.report.provenance import atomic_write_text

    data = args.stage2.data
    if not data.val_file:
        raise ValueError("student.select=kl scores candidates on held-out tokens: set stage2.data.val_file")
    rows, _ = validation_rows(data.val_file, Tokenizer.load(data.tokenizer), data.seq_len, student.select_tokens)
    keep, scores = select_by_kl(
        teacher, stage1, rows, student.n_full, linear_settings(args), data.batch_size, args.stage2.kl_chunk
    )
    if info.is_main:
        record = {"full_layers": keep, "kl_when_restored": {str(k): v for k, v in scores.items()}}
        atomic_write_text(cached, json.dumps(record, indent=2) + "\n")
    logger.info("KL-guided selection keeps layers %s full attention", keep)
    return full_layer_pattern(n_layers, keep, student.linear_mixer)


def parallelize_alignment(objective: AttentionAlignment, recipe: Recipe, info: DistInfo) -> nn.Module:
    """Stage 1 calls the linear mixers directly, not their blocks: each mixer is its own FSDP unit, the rest
    (frozen, unused) sits in the root's. Activation checkpointing and compile act on blocks: not applied."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from lt2.train.distributed import mixed_precision

    train = recipe.train
    if train.activation_checkpointing != "none" or train.compile:
        logger.warning("stage 1 ignores activation_checkpointing and compile (they wrap blocks, which it skips)")
    if not train.fsdp:
        if info.world_size > 1:
            raise ValueError(f"train.fsdp=false needs a single rank, got {info.world_size}")
        return objective
    mesh = init_device_mesh(info.device.type, (info.world_size,))
    for i in objective.linear_layers:
        fully_shard(objective.lm.layers[i].mixer, mesh=mesh, mp_policy=mixed_precision(train))
    fully_shard(objective, mesh=mesh, mp_policy=mixed_precision(train))
    return objective


def check_folders(stage: str, teacher_dir: str | None, init_dir: str | None) -> None:
    """ValueError unless the stage got the model folders it reads (stage1: teacher; 2: both; 3: init)."""
    needs = {"stage1": ("teacher",), "stage2": ("teacher", "init"), "stage3": ("init",)}[stage]
    for name, value in (("teacher", teacher_dir), ("init", init_dir)):
        if name in needs and not value:
            raise ValueError(f"lt2 distill {stage} needs --{name}")
        if value and not (Path(value) / "config.json").is_file():
            raise ValueError(f"--{name} {value} is not a model folder: config.json is missing")


def folder_model_args(directory: str | Path) -> ModelArgs:
    """The architecture in a model folder's config.json (ours, or Ouro's), without reading its weights."""
    from lt2.config import resolve
    from lt2.distill.ouro import model_args_from_config

    config = json.loads((Path(directory) / "config.json").read_text())
    return model_args_from_config(config) if config.get("model_type") == "ouro" else resolve(ModelArgs, config)


def check_run(stage: str, args: DistillArgs, teacher_dir: str | None, init_dir: str | None) -> None:
    """The stage's run checked as a recipe (lt2.recipe.validate_recipe) against the model it starts from, before
    any weight is read: the student shares the teacher's sizes, so its context limit applies."""
    from lt2.recipe import validate_recipe

    run = args.stage(stage)
    model = folder_model_args(teacher_dir or init_dir)
    validate_recipe(Recipe(name=f"{args.name}_{stage}", scale=args.scale, model=model, data=run.data, train=run.train))


def prepare(
    stage: str, args: DistillArgs, teacher_dir: str | None, init_dir: str | None, run_dir: Path, info: DistInfo
) -> tuple[LoopedLM, Callable[[Recipe, DistInfo], nn.Module], Callable[[str], float] | None]:
    """The stage's student (materialised on the device), its objective builder and lr scale."""
    from lt2.train.loss import CausalLMLoss

    run = args.stage(stage)
    if run.linear_lr is not None and stage != "stage2":
        logger.warning("%s.linear_lr ignored: only stage 2 trains the linear mixers at their own lr", stage)
    teacher = load_teacher(teacher_dir, info.device) if teacher_dir else None
    if stage == "stage1":
        pattern = full_layer_pattern(teacher.args.n_layers, [], args.student.linear_mixer)
        student = build_student(teacher, pattern, linear_settings(args), seed=args.student.seed)

        def build(recipe, info):
            return parallelize_alignment(AttentionAlignment(student, teacher, run.train.loss_chunk), recipe, info)

        return student, build, None
    if stage == "stage2":
        stage1 = LoopedLM.from_pretrained(init_dir, device=info.device)
        pattern = stage2_pattern(args, teacher, stage1, run_dir, info)
        student = student_from_stage1(teacher, stage1, pattern, linear_settings(args))
        linear = {i for i, block in enumerate(student.layers) if block.family != "attention"}
        ratio = (run.linear_lr or run.train.optim.lr) / run.train.optim.lr

        def lr_scale(name: str) -> float:
            parts = name.split(".")
            return ratio if parts[0] == "layers" and int(parts[1]) in linear and parts[2] == "mixer" else 1.0

        def build(recipe, info):
            objective = LogitDistillation(student, teacher, run.kl_chunk)
            if recipe.train.compile:
                objective.kl_fn = torch.compile(chunk_kl_and_grad)
            return parallelize(objective, recipe.train, info)

        return student, build, lr_scale
    student = LoopedLM.from_pretrained(init_dir, device=info.device)

    def build(recipe, info):
        return parallelize(CausalLMLoss(student, run.train.loss_chunk), recipe.train, info)

    return student, build, None


class _Preempted(Exception):
    """The stage stopped for a preemption (checkpoint written, exit 75): no outputs, so no provenance."""


def stage_inputs(config: str, run: StageArgs, teacher_dir: str | None, init_dir: str | None) -> list[Path]:
    """What a stage reads, for its provenance: the YAML, the models' files, the data chunks, val file, tokenizer."""
    from lt2.data.loader import find_chunks

    inputs = [Path(config)]
    for directory in (teacher_dir, init_dir):
        if directory:
            inputs += sorted(p for p in Path(directory).iterdir() if p.name in ("config.json", "model.safetensors"))
    inputs += [*find_chunks(run.data.train_dir), Path(run.data.tokenizer)]
    return inputs + ([Path(run.data.val_file)] if run.data.val_file else [])


def run_stage(
    stage: str,
    config: str,
    overrides: list[str],
    dump_dir: str | Path,
    out_dir: str | Path | None = None,
    teacher_dir: str | None = None,
    init_dir: str | None = None,
) -> int:
    """Run (or resume) one stage; returns the exit status (0 done, 75 preempted). Provenance of `out_dir`."""
    from lt2.report import provenance
    from lt2.train.distributed import destroy_distributed, init_distributed
    from lt2.train.loop import Trainer
    from lt2.train.metrics import setup_logging
    from lt2.train.preemption import EXIT_PREEMPTED, Preemption

    args = load_distill(config, overrides)
    validate_distill(args, stage)
    check_folders(stage, teacher_dir, init_dir)
    check_run(stage, args, teacher_dir, init_dir)
    inputs = stage_inputs(config, args.stage(stage), teacher_dir, init_dir)
    setup_logging()
    run, run_dir = args.stage(stage), Path(dump_dir)
    info = init_distributed()
    trainer = None
    recording = out_dir is not None and info.is_main
    outputs = [Path(out_dir) / name for name in OUTPUT_FILES] if recording else []
    try:
        with (
            provenance.record_if(recording, outputs, inputs=inputs, config={"stage": stage, **to_dict(args)}),
            Preemption() as preemption,
        ):
            student, build, lr_scale = prepare(stage, args, teacher_dir, init_dir, run_dir, info)
            recipe = Recipe(name=f"{args.name}_{stage}", scale=args.scale, model=student.args, data=run.data,
                            train=run.train)  # fmt: skip
            trainer = Trainer(recipe, run_dir, info, build=build, lr_scale=lr_scale)
            if trainer.fit(out_dir, preemption).status == "preempted":
                raise _Preempted  # leaves the provenance record unwritten: there are no outputs yet
    except _Preempted:
        return EXIT_PREEMPTED
    finally:
        if trainer is not None:
            trainer.close()
        destroy_distributed()
    return 0


def nproc_argv(stage: str, config: str, overrides: list[str], **paths: str | None) -> list[str]:
    """The command line a launched worker reruns (`lt2 distill ...` without --nproc-per-node)."""
    argv = ["distill", stage, config, *overrides]
    for name, value in paths.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def run_distill(
    stage: str,
    config: str,
    overrides: list[str],
    dump_dir: str,
    out_dir: str | None,
    teacher_dir: str | None,
    init_dir: str | None,
    nproc_per_node: str = "1",
) -> int:
    """`lt2 distill`: start `nproc_per_node` ranks on this node (as `lt2 train` does) or run this rank."""
    from lt2.train.launch import launch_workers, resolve_nproc

    args = load_distill(config, overrides)  # a bad config fails before any worker starts
    validate_distill(args, stage)
    check_folders(stage, teacher_dir, init_dir)
    check_run(stage, args, teacher_dir, init_dir)
    nproc = resolve_nproc(nproc_per_node)
    already_a_rank = "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if nproc > 1 and not already_a_rank:
        argv = nproc_argv(stage, config, overrides, dump_dir=dump_dir, out=out_dir, teacher=teacher_dir, init=init_dir)
        return launch_workers(argv, nproc)
    return run_stage(stage, config, overrides, dump_dir, out_dir, teacher_dir, init_dir)
