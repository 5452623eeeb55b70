"""`lt2 distill stage1 -> stage2 -> stage3` end to end on a tiny trained teacher, and exact resume after a kill.

Each stage runs as `lt2 distill` in a subprocess on the training engine (FSDP2 on one gloo rank, DCP
checkpoints). Checked: stage 1's alignment MSE and stage 2's KL fall by stated factors, the student ends
within a stated margin of the teacher's validation loss, and a stage killed mid-run (SIGKILL) and restarted
logs exactly the loss curve of the uninterrupted run.

Run: pytest tests/distill/test_stages.py
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from distill_helpers import data_overrides, env, in_process

STAGES = {
    "stage1": {"steps": 20, "lr": 1e-2, "warmup_steps": 3, "lr_min_ratio": 0.1},
    "stage2": {"steps": 20, "lr": 3e-3, "warmup_steps": 0, "lr_min_ratio": 1.0},
    "stage3": {"steps": 6, "lr": 1e-3, "warmup_steps": 0, "lr_min_ratio": 1.0},
}
DETERMINISTIC = ("step", "loss", "lr", "grad_norm", "tokens", "data_fingerprint")


def config(path, select: dict | None = None) -> str:
    stages = {
        name: {
            "data": {"seq_len": 32, "batch_size": 4},
            "train": {
                "steps": s["steps"],
                "dtype": "fp32",
                "compile": False,
                "log_every": 1,
                "val_every": s["steps"],
                "val_tokens": 1024,
                "checkpoint": {"every": 10, "keep": 3},
                "optim": {k: v for k, v in s.items() if k != "steps"} | {"weight_decay": 0.0},
            },
        }
        for name, s in STAGES.items()
    }
    stages["stage2"]["linear_lr"] = 1e-2
    student = {"select": "list", "full_layers": [2], **(select or {})}
    text = json.dumps(
        {"name": "toy_hybrid", "scale": "tiny", "teacher": {"source": "lt2"}, "student": student, **stages}
    )
    path.write_text(text)
    return str(path)


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def losses(run_dir) -> list[float]:
    return [r["loss"] for r in metrics(run_dir) if "loss" in r]


def val_loss(run_dir) -> float:
    return [r["val_loss"] for r in metrics(run_dir) if "val_loss" in r][-1]


def stage_args(stage, cfg, corpus, teacher_dir, root, init=None) -> list:
    args = ["distill", stage, cfg, *data_overrides(corpus, stage), "--dump-dir", root / f"run_{stage}"]
    args += ["--out", root / stage]
    if stage != "stage3":
        args += ["--teacher", teacher_dir]
    if init is not None:
        args += ["--init", init]
    return args


@pytest.fixture(scope="module")
def pipeline(corpus, teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    cfg = config(root / "toy.yaml")
    in_process(stage_args("stage1", cfg, corpus, teacher_dir, root))
    in_process(stage_args("stage2", cfg, corpus, teacher_dir, root, init=root / "stage1"))
    in_process(stage_args("stage3", cfg, corpus, teacher_dir, root, init=root / "stage2"))
    return root, cfg


def test_stage1_alignment_mse_falls(pipeline):
    curve = losses(pipeline[0] / "run_stage1")
    assert len(curve) == STAGES["stage1"]["steps"]
    assert curve[-1] < 0.1 * curve[0], curve  # the MSE falls at least tenfold


def test_stage2_kl_falls(pipeline):
    curve = losses(pipeline[0] / "run_stage2")
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < 0.6 * first, curve  # the KL of the last five steps is at most 60% of the first five's


def test_student_ends_near_the_teacher(pipeline, teacher_dir):
    root, _ = pipeline
    teacher = val_loss(teacher_dir)
    student = val_loss(root / "run_stage3")
    assert student < teacher + 0.1, (student, teacher)  # nats per token
    for stage in ("stage1", "stage2", "stage3"):
        assert (root / stage / "model.safetensors").is_file()
        for name in ("model.safetensors", "config.json", "metrics.jsonl", "recipe.yaml"):
            assert (root / stage / f"{name}.prov.json").is_file(), (stage, name)
    cfg = json.loads((root / "stage2" / "config.json").read_text())
    assert cfg["pattern"] == "gdn,gdn,full"


def test_killed_stage_resumes_on_the_same_curve(pipeline, corpus, teacher_dir, tmp_path):
    root, cfg = pipeline
    args = stage_args("stage2", cfg, corpus, teacher_dir, tmp_path, init=root / "stage1")
    cmd = [sys.executable, "-m", "lt2.cli", *map(str, args)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = tmp_path / "run_stage2"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # kill after the step-10 checkpoint
        if (run_dir / "metrics.jsonl").is_file() and any(r.get("step", 0) >= 13 for r in metrics(run_dir)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    in_process(args)  # resume (in this process: no second interpreter start-up)
    resumed = {r["step"]: r for r in metrics(run_dir) if "loss" in r}
    golden = {r["step"]: r for r in metrics(root / "run_stage2") if "loss" in r}
    assert sorted(resumed) == sorted(golden)
    for step, record in golden.items():
        assert {k: resumed[step][k] for k in DETERMINISTIC} == {k: record[k] for k in DETERMINISTIC}, step


def test_kl_guided_selection_is_made_once_and_kept(pipeline, corpus, teacher_dir, tmp_path):
    """select=kl scores every layer restored alone on held-out tokens, writes selection.json, and a resumed
    stage reads the same choice back instead of scoring again."""
    import torch

    from lt2.distill.args import load_distill
    from lt2.distill.stages import SELECTION, load_teacher, stage2_pattern
    from lt2.model import LoopedLM
    from lt2.train.distributed import DistInfo

    root, _ = pipeline
    cfg = config(tmp_path / "kl.yaml", {"select": "kl", "n_full": 1, "select_tokens": 64})
    args = load_distill(cfg, data_overrides(corpus, "stage2"))
    info = DistInfo(0, 1, 0, torch.device("cpu"), None)
    teacher, stage1 = load_teacher(teacher_dir, info.device), LoopedLM.from_pretrained(root / "stage1")
    pattern = stage2_pattern(args, teacher, stage1, tmp_path, info)
    saved = json.loads((tmp_path / SELECTION).read_text())
    assert pattern.split(",").count("full") == 1 and pattern.split(",").index("full") == saved["full_layers"][0]
    assert sorted(saved["kl_when_restored"]) == ["0", "1", "2"]
    (tmp_path / SELECTION).write_text(json.dumps({"full_layers": [0]}))  # the cached choice wins
    assert stage2_pattern(args, teacher, stage1, tmp_path, info) == "full,gdn,gdn"


def test_preempted_stage_exits_75_without_provenance_then_completes(pipeline, corpus, teacher_dir, tmp_path):
    """SIGUSR1 mid-stage: checkpoint, exit 75, no outputs and no records; the rerun resumes and completes."""
    import os
    import threading

    _, cfg = pipeline
    args = stage_args("stage1", cfg, corpus, teacher_dir, tmp_path)
    run_dir = tmp_path / "run_stage1"

    def signal_at_step_3():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run_dir / "metrics.jsonl").is_file() and any(r.get("step", 0) >= 3 for r in metrics(run_dir)):
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.01)

    from lt2.cli import main

    watcher = threading.Thread(target=signal_at_step_3)
    watcher.start()
    status = main([str(a) for a in args])
    watcher.join()
    assert status == 75
    assert not (tmp_path / "stage1").exists() and not list(tmp_path.glob("stage1/*.prov.json"))
    assert 3 <= max(r["step"] for r in metrics(run_dir) if "loss" in r) < STAGES["stage1"]["steps"]
    in_process(args)
    assert (tmp_path / "stage1" / "model.safetensors.prov.json").is_file()
    assert len(losses(run_dir)) == STAGES["stage1"]["steps"]
