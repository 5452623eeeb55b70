"""Bad recipe keys, types and values fail before anything is built, with exit status 2 and the key named.

pytest tests/train/test_config_errors.py
"""

from __future__ import annotations

import pytest

from lt2.cli import main


@pytest.mark.parametrize(
    ("yaml_extra", "overrides", "named"),
    [
        ("", ["train.optim.lrr=0.1"], "train.optim.lrr"),
        ("", ["train.steps=abc"], "train.steps"),
        ("", ["model.dim=big"], "model.dim"),
        ("", ["data.doc_mask=maybe"], "data.doc_mask"),
        ("train: {chekpoint: {every: 5}}\n", [], "train.chekpoint"),
        ("", ["train.activation_checkpointing=most"], "train.activation_checkpointing"),
        ("", ["train.dtype=fp16"], "train.dtype"),
        ("", ["train.optim.warmup_steps=100", "train.steps=10"], "train.optim.warmup_steps"),
        ("", ["train.grad_accum=0"], "train.grad_accum"),
        ("", ["data.train_dir="], "data.train_dir"),
    ],
    ids=[
        "unknown-override",
        "int-type",
        "model-type",
        "bool-type",
        "unknown-yaml-key",
        "ac-mode",
        "dtype",
        "warmup",
        "accum",
        "no-data",
    ],
)
def test_bad_recipe_fails_before_training(tmp_path, capsys, yaml_extra, overrides, named):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {train_dir: somewhere, tokenizer: tok}\ntrain: {steps: 100, optim: {warmup_steps: 5}}\n")
    if yaml_extra:
        recipe.write_text(yaml_extra)  # the YAML itself is wrong (and names no data: the key check comes first)
    run_dir = tmp_path / "run"
    rc = main(["train", str(recipe), *overrides, "--dump-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("lt2 train: error:") and named in err, err
    assert not run_dir.exists()  # nothing was built or written


def test_bench_train_checks_the_recipe_too(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {n_layerz: 2}\n")
    assert main(["bench", "train", str(recipe), "--steps", "1"]) == 2
    assert "model.n_layerz" in capsys.readouterr().err


def test_missing_recipe_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml"), "--dump-dir", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
