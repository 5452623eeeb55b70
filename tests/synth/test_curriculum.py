"""The curriculum runner (lt2.synth.curriculum) and its command: stages advance at the threshold, a run killed
mid-stage resumes at the same stage and step and ends exactly as the uninterrupted run, `lt2 synth run` writes
its record with provenance; every arm builds and runs; the table and the heatmap read the records.

Run: pytest tests/synth/test_curriculum.py
"""

from __future__ import annotations

import json

import pytest
import torch

from lt2.cli import main
from lt2.report import provenance
from lt2.synth.arms import ARMS, arm_model
from lt2.synth.curriculum import EVAL_KEY, Curriculum, load_synth_args, masked_loss
from lt2.synth.task import IGNORE, Vocab

TINY = [
    "model.dim=16", "model.n_layers=2", "model.n_heads=2", "model.ffn_dim=32", "model.vocab_size=32",
    "model.linear.n_heads=2", "model.linear.head_dim=8", "model.window=8", "model.nsa.block_size=4",
    "model.nsa.block_count=2", "model.nsa.window=8", "nsa_heads=0", "curriculum.stages=[8,16]",
    "curriculum.stage_steps=6", "curriculum.eval_every=3", "curriculum.eval_samples=16", "train.batch_size=4",
    "train.optim.warmup_steps=2", "train.checkpoint.every=100", "train.dtype=fp32",
]  # fmt: skip


class StopAt:
    """A stand-in for lt2.train.preemption.Preemption whose flag rises once `steps` optimizer steps are done."""

    def __init__(self, curriculum: Curriculum, steps: int):
        self.curriculum, self.steps = curriculum, steps

    @property
    def flag(self) -> int:
        return int(self.curriculum.state.total_steps >= self.steps)


class Never:
    flag = 0


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "device"}


def test_killed_mid_stage_resumes_at_its_stage_and_step(tmp_path):
    # threshold 0.01: stage 0 passes at an evaluation (any right answer), so the kill lands mid stage 1
    args = load_synth_args(None, [*TINY, "curriculum.threshold=0.01"])
    whole = Curriculum(args, "transformer", 2, tmp_path / "whole", "cpu").run(Never())
    assert whole.status == "completed"
    stages = whole.record["stages"]
    assert [(r["n"], r["passed"]) for r in stages] == [(8, True), (16, True)] and whole.record["n_max"] == 16
    stage0 = stages[0]["steps"]
    assert stage0 in (3, 6) and whole.record["total_steps"] == stage0 + stages[1]["steps"]

    first = Curriculum(args, "transformer", 2, tmp_path / "killed", "cpu")
    result = first.run(StopAt(first, stage0 + 2))
    assert result.status == "preempted" and (first.state.stage, first.state.step) == (1, 2)
    resumed = Curriculum(args, "transformer", 2, tmp_path / "killed", "cpu")
    assert (resumed.state.stage, resumed.state.step, resumed.state.total_steps) == (1, 2, stage0 + 2)
    assert resumed.scheduler.last_epoch == stage0 + 2
    finished = resumed.run(Never())
    assert without_timing(finished.record) == without_timing(whole.record)  # same evaluations, same accuracies
    for name, p in resumed.model.state_dict().items():
        assert torch.equal(p, Curriculum(args, "transformer", 2, tmp_path / "whole", "cpu").model.state_dict()[name])


def test_failed_stage_ends_the_run_and_resume_checks_the_config(tmp_path):
    args = load_synth_args(None, TINY)  # threshold 0.9: nothing passes in 6 steps
    record = Curriculum(args, "gdn", 1, tmp_path, "cpu").run(Never()).record
    assert record["n_max"] == 0 and len(record["stages"]) == 1 and record["complete"]
    stage = record["stages"][0]
    assert stage["steps"] == 6 and [e["step"] for e in stage["evals"]] == [3, 6] and not stage["passed"]
    other = load_synth_args(None, [*TINY, "curriculum.stage_steps=7"])
    with pytest.raises(ValueError, match="curriculum"):
        Curriculum(other, "gdn", 1, tmp_path, "cpu")
    runtime_only = load_synth_args(None, [*TINY, "curriculum.time_limit_s=60", "train.log_every=7"])
    assert Curriculum(runtime_only, "gdn", 1, tmp_path, "cpu").state.done  # resumes the finished run


def test_time_limit_ends_the_run_with_a_record(tmp_path):
    args = load_synth_args(None, [*TINY, "curriculum.time_limit_s=1e-9"])
    record = Curriculum(args, "transformer", 1, tmp_path, "cpu").run(Never()).record
    assert record["stopped"] == "time_limit" and record["n_max"] == 0 and record["total_steps"] == 1
    assert record["stages"][0]["cut_short"] and not record["stages"][0]["passed"]


def test_cli_run_writes_record_with_provenance(tmp_path, capsys):
    out = tmp_path / "results" / "synthetic" / "gdn_negeig" / "T2.json"
    argv = ["synth", "run", "config/synth/tiny.yaml", *TINY, "--arm", "gdn_negeig", "--loop-count", "2",
            "--dump-dir", str(tmp_path / "run"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["arm"] == "gdn_negeig" and record["loop_count"] == 2 and record["budget"] == "tiny"
    assert record["reveals"] and record["strict_share"] == 0.2
    assert record["stages_run"] == [8]  # the tiny budget caps the stages
    prov = provenance.read_provenance(out)
    assert prov["config"]["model"]["linear"]["allow_neg_eigval"] is True
    assert prov["inputs"][0]["path"].endswith("config/synth/tiny.yaml")
    assert main([*argv[:4], "--arm", "mamba", "--loop-count", "1", "--dump-dir", "x", "--out", "y"]) == 2
    assert "valid arms: transformer" in capsys.readouterr().err


class Oracle(torch.nn.Module):
    """A stand-in model that knows every answer: logits [B, L, V] put all mass on the true next token."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, vocab_size: int):
        super().__init__()
        nxt = torch.cat([inputs[:, 1:], inputs[:, -1:]], 1)  # the next input token (the last row's: itself)
        nxt = torch.where(targets != IGNORE, targets, nxt)  # and the answer after the last input token
        self.logits = 30.0 * torch.nn.functional.one_hot(nxt, vocab_size).float()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits[:, : tokens.shape[1]]

    def seq_info(self, tokens: torch.Tensor):
        return None

    def hidden_states(self, tokens: torch.Tensor, seq) -> torch.Tensor:
        return self.logits[:, : tokens.shape[1]]

    def output(self, h: torch.Tensor) -> torch.Tensor:
        return h


def test_loss_and_evaluation_score_the_answer_positions(tmp_path):
    """The training loss and the evaluation read the positions whose next token is the answer: a model that
    knows every next token has loss ~0 and accuracy 1, so neither the loss mask nor the scored position is
    shifted against the inputs (the generator's tests check the targets against a plain-Python run)."""
    args = load_synth_args(None, [*TINY, "curriculum.eval_samples=64", "curriculum.eval_batch=64"])
    curriculum = Curriculum(args, "transformer", 1, tmp_path, "cpu")
    train = curriculum.batch(0, 0, 64, 0)
    oracle = Oracle(train.inputs, train.targets, curriculum.model_args.vocab_size)
    assert masked_loss(oracle(train.inputs), train.targets).item() < 1e-6
    # the evaluation's programs (strict, fresh): the oracle that knows them is right on every one
    held = curriculum.batch(curriculum.state.stage, curriculum.state.total_steps, 64, EVAL_KEY)
    assert (held.targets != IGNORE).sum(1).eq(1).all()  # strict: the final bit is the only target
    curriculum.model = Oracle(held.inputs, held.targets, curriculum.model_args.vocab_size)
    assert curriculum.evaluate() == 1.0
    # the answer as seen by evaluation is the training target at answer_index
    rows = torch.arange(64)
    assert torch.equal(held.targets[rows, held.answer_index], held.answer)


def test_a_fixed_batch_is_learned_to_zero_loss(tmp_path):
    """The optimisation path works (gradients reach the answer positions, the schedule moves): the paper's
    task settings, the tiny backbone, 16 programs fitted in 100 steps."""
    args = load_synth_args("config/synth/tiny.yaml", ["curriculum.stage_steps=1000"])
    curriculum = Curriculum(args, "transformer", 1, tmp_path, "cpu")
    batch = curriculum.batch(0, 0, 16, 0)
    first = curriculum.train_step(batch)
    for _ in range(100):
        last = curriculum.train_step(batch)
    assert first > 3.0 and last < 0.1, (first, last)


@pytest.mark.parametrize("arm", list(ARMS))
def test_every_arm_builds_and_learns_a_step(arm, tmp_path):
    args = load_synth_args(None, TINY)
    curriculum = Curriculum(args, arm, 2, tmp_path, "cpu")
    layout = curriculum.model_args.layout.table()
    assert len(layout) == 2 and len(layout[0]) == 2
    assert ARMS[arm].hybrid == (len(set(layout[0])) == 2)  # hybrids interleave two mixers 1:1
    batch = curriculum.batch(0, 0, 4, 0)
    before = curriculum.train_step(batch)
    assert torch.isfinite(torch.tensor(before)) and 0.0 <= curriculum.evaluate() <= 1.0


def test_nsa_heads_and_neg_eigval_reach_the_model():
    args = load_synth_args("config/synth/paper.yaml")
    for arm in ("nsa", "gdn_nsa"):
        m = arm_model(args.model, arm, 1, args.nsa_heads)
        assert (m.n_heads, m.head_dim, m.nsa.n_kv_heads, m.linear.n_heads) == (16, 16, 1, 4)
    assert arm_model(args.model, "transformer", 4, args.nsa_heads).n_heads == 4
    assert arm_model(args.model, "gdn_negeig", 1).linear.allow_neg_eigval
    assert not arm_model(args.model, "gdn", 1).linear.allow_neg_eigval
    assert args.model.vocab_size == Vocab(256).size and args.curriculum.stage_steps == 100_000


def test_table_and_heatmap_read_the_records(tmp_path):
    from lt2.report.figures import build_figure
    from lt2.report.tables import build_table

    def records(budget: str) -> list:
        paths = []
        cells = [("transformer", 1, 16), ("transformer", 8, 32), ("gdn_window", 1, 0), ("gdn_window", 8, 8)]
        for arm, loop, n_max in cells:
            path = tmp_path / budget / arm / f"T{loop}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            spec = ARMS[arm]
            # the last stage attempted: failed at n_max's next stage (n = 8 when none passed)
            last = {"n": 2 * n_max if n_max else 8, "accuracy": 0.5 + loop / 100, "passed": False}
            path.write_text(json.dumps({"arm": arm, "label": spec.label, "hybrid": spec.hybrid, "loop_count": loop,
                                        "n_max": n_max, "budget": budget, "stages_run": [8, 16, 32, 64],
                                        "stages": [last], "chance": 0.5, "shortcut": 0.6}))  # fmt: skip
            paths.append(path)
        return paths

    # the paper's outcomes (rows paper/<arm>, the paper budget) stand beside every budget's rows
    for budget in ("paper", "tiny"):
        rows = build_table("synthetic", records(budget), "config/paper/synthetic.csv").set_index("recipe")
        assert rows.loc["transformer", "n_max T=8"] == 32 and rows.loc["gdn_window", "n_max best T"] == 8
        assert rows.loc["gdn_window", "paper n_max T=8"] == 128 and rows.loc["gdn_window", "paper n_max T=1"] == 32
        assert rows.loc["transformer", "paper n_max T=1"] == 64 and rows.loc["transformer", "paper n_max best T"] == 64
        assert not [c for c in rows.columns if c.endswith("]")], list(rows.columns)  # no same-scale matching
        # how far each run got: the last stage attempted and its accuracy, against shortcut and chance
        assert rows.loc["gdn_window", "last n T=1"] == 8 and rows.loc["gdn_window", "acc T=1"] == 0.51
        assert rows.loc["transformer", "last n T=8"] == 64 and rows.loc["transformer", "acc T=8"] == 0.58
        assert (rows["shortcut"] == 0.6).all() and (rows["chance"] == 0.5).all() and (rows["majority"] == 0.69).all()
    # paper columns that no row fills are left out (the paper states NSA arms' best T only)
    only_t1 = [p for p in records("t1") if p.stem == "T1"]
    assert "paper n_max T=8" not in build_table("synthetic", only_t1, "config/paper/synthetic.csv").columns
    paths = records("tiny")
    fig = build_figure("synthetic_heatmap", [*paths, "config/paper/synthetic.csv"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "32\npaper 64" in texts and "none\npaper 32" in texts
