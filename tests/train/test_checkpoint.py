"""Checkpoints: only complete ones are used (missing manifest, truncated or corrupt files are skipped with a
warning), keep-last-k, and `lt2 export`: the exported model's logits equal the trained model's.

    pytest tests/train/test_checkpoint.py
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from train_helpers import recipe_text

from lt2.cli import main
from lt2.model.looped import LoopedLM
from lt2.recipe import load_recipe
from lt2.train.checkpoint import MANIFEST, Checkpointer, resolve_checkpoint, verify
from lt2.train.distributed import DistInfo, destroy_distributed, init_distributed
from lt2.train.loop import Trainer
from lt2.train.optim import build_optimizer, build_scheduler

SINGLE = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), control_group=None)


def _save_steps(run_dir, steps, keep=10) -> Checkpointer:
    args = load_recipe(None, ["model.vocab_size=32", "model.dim=16", "model.n_layers=1", "model.loop_count=2",
                              "model.n_heads=2", "model.ffn_dim=16"]).model  # fmt: skip
    model = LoopedLM(args)
    model.init_weights()
    opt = build_optimizer(model, load_recipe(None).train.optim, SINGLE.device)
    sched = build_scheduler(opt, load_recipe(None).train.optim, 100)
    ckpt = Checkpointer(run_dir, keep, SINGLE)
    for step in steps:
        with torch.no_grad():
            model.embed.weight.add_(1.0)  # every checkpoint holds different weights
        ckpt.save(step, model, opt, {"scheduler": sched.state_dict(), "data": None}, "model: {}\n")
    return ckpt


def test_newest_complete_checkpoint_wins_and_bad_ones_are_reported(tmp_path, caplog):
    ckpt = _save_steps(tmp_path, [1, 2, 3, 4])
    root = ckpt.root
    (root / "step_00000004" / MANIFEST).unlink()  # killed before the manifest: not complete
    shard = root / "step_00000003" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped bit
    shard.write_bytes(bytes(data))
    (root / "step_00000002" / "train_state.json").write_text("{}")  # edited after the fact
    (root / ".tmp_step_00000005").mkdir()  # a save in progress is never a candidate
    with caplog.at_level(logging.WARNING):
        assert ckpt.find_latest() == root / "step_00000001"
    assert "step_00000004 is incomplete or corrupt (no manifest.json" in caplog.text
    assert "step_00000003 is incomplete or corrupt (__0_0.distcp does not match its sha256)" in caplog.text
    assert "step_00000002 is incomplete or corrupt (train_state.json has 2 bytes" in caplog.text
    assert verify(root / "step_00000001") is None
    assert resolve_checkpoint(tmp_path) == root / "step_00000001"
    with pytest.raises(ValueError, match="unusable"):
        resolve_checkpoint(root / "step_00000003")


def test_keep_last_k_and_stale_temporaries_removed(tmp_path):
    (tmp_path / "checkpoints" / ".tmp_step_00000000").mkdir(parents=True)
    ckpt = _save_steps(tmp_path, [3, 6, 9, 12, 15], keep=2)
    assert sorted(p.name for p in ckpt.root.iterdir()) == ["step_00000012", "step_00000015"]
    manifest = json.loads((ckpt.root / "step_00000015" / MANIFEST).read_text())
    assert manifest["step"] == 15 and manifest["schema"] == 1
    assert {"train_state.json", "recipe.yaml", ".metadata", "__0_0.distcp"} <= set(manifest["files"])


@pytest.fixture
def trained(corpus, tmp_path):
    """A run trained in this process (one rank, FSDP), its Trainer still alive."""
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(recipe_text(corpus, train={"steps": 6, "val_every": 0, "checkpoint": {"every": 4}}))
    info = init_distributed()
    trainer = Trainer(load_recipe(recipe_path), tmp_path / "run", info)
    try:
        trainer.fit(tmp_path / "out")
        yield trainer, tmp_path
    finally:
        trainer.close()
        destroy_distributed()


def test_export_round_trip_reproduces_the_trained_model(trained, capsys):
    trainer, root = trained
    assert main(["export", str(root / "run"), str(root / "exported")]) == 0
    assert "step_00000006" in capsys.readouterr().out
    exported = LoopedLM.from_pretrained(root / "exported")
    # The parameters the trainer holds (FSDP shards gathered) are exactly the exported ones.
    live = get_model_state_dict(trainer.model.lm, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    own = exported.state_dict()
    assert set(live) == set(own)
    for name, tensor in live.items():
        assert torch.equal(tensor, own[name]), name
    # And the exported model scores tokens as the trained model does.
    tokens = torch.randint(0, 384, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained_losses = trainer.model(tokens[:, :-1], tokens[:, 1:], reduction="none")  # the FSDP-wrapped model
        logits = exported(tokens[:, :-1])
    exported_losses = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(2, 32)
    torch.testing.assert_close(exported_losses, trained_losses, rtol=1e-5, atol=1e-5)
    # The run's own output folder was written through the same export.
    assert (root / "out" / "config.json").read_text() == (root / "exported" / "config.json").read_text()
    out_tensors, exported_tensors = (
        load_file(root / "out" / "model.safetensors"),
        load_file(root / "exported" / "model.safetensors"),
    )
    assert out_tensors.keys() == exported_tensors.keys()
    assert all(torch.equal(out_tensors[k], exported_tensors[k]) for k in out_tensors)


def test_export_of_a_folder_without_checkpoints_fails(tmp_path, capsys):
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir()
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
