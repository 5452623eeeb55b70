"""Distillation configs: the committed ones resolve and validate; bad values fail naming the key and choices.

Run: pytest tests/distill/test_args.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lt2.distill.args import STAGES, load_distill, validate_distill

ROOT = Path(__file__).parents[2] / "config" / "distill"
DATA = [f"{s}.data.{k}=x" for s in STAGES for k in ("train_dir", "tokenizer")]


@pytest.mark.parametrize("name", ["tiny", "1B"])
def test_committed_configs_validate(name):
    args = load_distill(ROOT / f"{name}.yaml", DATA)
    for stage in STAGES:
        validate_distill(args, stage)
    assert args.student.pattern == "interleave:4:1:gdn:full"


def test_paper_config_is_the_recipe():
    args = load_distill(ROOT / "1B.yaml")
    assert (args.teacher.source, args.teacher.hub_id) == ("ouro", "ByteDance/Ouro-1.4B")
    assert (args.stage1.data.seq_len, args.stage1.train.optim.lr) == (512, 1e-3)
    assert (args.stage2.data.seq_len, args.stage2.train.optim.lr, args.stage2.linear_lr) == (4096, 7e-6, 1e-4)
    assert args.stage2.train.optim.lr_min_ratio == 1.0 and args.stage2.train.optim.warmup_steps == 0  # constant


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["teacher.source=llama"], "teacher.source='llama'; valid: lt2, ouro"),
        (["student.select=random"], "student.select='random'; valid: pattern, list, kl"),
        (["student.select=list"], "needs student.full_layers"),
        (["stage1.linear_lr=-1"], "stage1.linear_lr=-1.0 must be > 0"),
        (["stage1.kl_chunk=0"], "stage1.kl_chunk=0 must be >= 1"),
    ],
)
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        validate_distill(load_distill(ROOT / "tiny.yaml", [*DATA, *overrides]), "stage1")


def test_unknown_key_and_stage_are_named():
    with pytest.raises(ValueError, match=r"stage1\.trian"):
        load_distill(ROOT / "tiny.yaml", ["stage1.trian.steps=3"])
    with pytest.raises(ValueError, match="unknown distillation stage 'stage4'; valid: stage1, stage2, stage3"):
        validate_distill(load_distill(ROOT / "tiny.yaml", DATA), "stage4")


def test_missing_model_folders_fail_before_any_work(tmp_path):
    from lt2.cli import main

    cfg = str(ROOT / "tiny.yaml")
    run = ["--dump-dir", str(tmp_path / "run")]
    assert main(["distill", "stage2", cfg, *DATA, "--teacher", str(tmp_path), *run]) == 2  # no config.json
    assert main(["distill", "stage3", cfg, *DATA, *run]) == 2  # no --init
    assert not (tmp_path / "run").exists()


def test_run_settings_are_checked_against_the_model_before_any_work(tmp_path):
    from lt2.cli import main
    from lt2.testing import tiny_model

    tiny_model("full", 1).float().save_pretrained(tmp_path / "teacher")  # max_seqlen 512
    cfg, run = str(ROOT / "tiny.yaml"), ["--teacher", str(tmp_path / "teacher"), "--dump-dir", str(tmp_path / "run")]
    assert main(["distill", "stage1", cfg, *DATA, "stage1.train.steps=0", *run]) == 2
    assert main(["distill", "stage1", cfg, *DATA, "stage1.data.seq_len=1024", *run]) == 2  # > max_seqlen
    assert not (tmp_path / "run").exists()
