"""The student built from a teacher: copied weights, the lossless all-attention case, decode == forward.

Run: pytest tests/distill/test_student.py
"""

from __future__ import annotations

import pytest
import torch

from lt2.distill.select import select_by_kl, student_from_stage1, transfer_linear_mixers
from lt2.distill.student import build_student, full_layer_pattern, student_args
from lt2.model import LoopedLM
from lt2.testing import assert_close, incremental_logits, tiny_args


def teacher_model(**overrides) -> LoopedLM:
    """A tiny fp32 teacher with GQA (4 heads, 2 KV heads) and Ouro's block options unless overridden."""
    args = tiny_args("full", 2, n_layers=3, gated_attn=False, sandwich_norm=True, loop_norm=True, exit_gate=True)
    for key, value in overrides.items():
        setattr(args, key, value)
    model = LoopedLM(args)
    model.init_weights()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # norms away from 1 so that copying them matters
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_every_layer_full_gives_back_the_teacher_exactly():
    teacher = teacher_model()
    student = build_student(teacher, "full").eval()
    tokens = torch.randint(0, 97, (2, 17))
    torch.testing.assert_close(student(tokens), teacher(tokens), rtol=0, atol=0)
    assert student.state_dict().keys() == teacher.state_dict().keys()


def test_linear_layers_start_from_the_attention_projections():
    teacher = teacher_model()
    student = build_student(teacher, full_layer_pattern(3, [1]), seed=5)
    assert [b.family for b in student.layers] == ["gdn", "attention", "gdn"]
    lin = student.args.linear
    assert (lin.n_heads, lin.head_dim, lin.head_v_dim, lin.conv_size, lin.use_gate) == (4, 8, 8, 0, True)
    for i in (0, 2):
        mixer, attn = student.layers[i].mixer, teacher.layers[i].mixer
        assert torch.equal(mixer.q_proj.weight, attn.wq.weight)
        assert torch.equal(mixer.o_proj.weight, attn.wo.weight)
        # GQA: KV head h serves query heads 2h and 2h+1, so its 8 rows appear twice in a row
        for ours, theirs in ((mixer.k_proj, attn.wk), (mixer.v_proj, attn.wv)):
            expected = theirs.weight.view(2, 8, -1).repeat_interleave(2, 0).reshape(32, -1)
            assert torch.equal(ours.weight, expected)
        assert mixer.q_conv1d is None and mixer.g_proj is not None
        # fresh: the gates, A_log, dt_bias (not copies of anything in the teacher)
        fresh = build_student(teacher, full_layer_pattern(3, [1]), seed=6).layers[i].mixer
        assert not torch.equal(mixer.A_log, fresh.A_log) and not torch.equal(mixer.g_proj.weight, fresh.g_proj.weight)
    torch.testing.assert_close(student.layers[1].state_dict(), teacher.layers[1].state_dict(), rtol=0, atol=0)
    for name in (
        "embed.weight",
        "norm.weight",
        "exit_gate.weight",
        "layers.0.ffn.w2.weight",
        "layers.2.ffn_out_norm.weight",
    ):
        assert torch.equal(student.state_dict()[name], teacher.state_dict()[name]), name


def test_hybrid_student_decodes_like_its_forward():
    # fp64 weights; the recurrent state is kept in fp32, as in every linear mixer: fp32-level tolerance
    student = build_student(teacher_model(), full_layer_pattern(3, [2])).double().eval()
    tokens = torch.randint(0, 97, (2, 11))
    assert_close("decode", incremental_logits(student, tokens, [4, 7]), student(tokens), rtol=1e-5, atol=1e-6)


def test_linear_mixers_move_from_stage1_to_the_hybrid():
    teacher = teacher_model()
    stage1 = build_student(teacher, full_layer_pattern(3, []))
    with torch.no_grad():
        for p in stage1.layers.parameters():
            p.add_(1.0)  # "trained"
    hybrid = student_from_stage1(teacher, stage1, full_layer_pattern(3, [0]), {})
    assert transfer_linear_mixers(stage1, hybrid) == [1, 2]
    torch.testing.assert_close(hybrid.layers[2].mixer.state_dict(), stage1.layers[2].mixer.state_dict())
    torch.testing.assert_close(hybrid.layers[0].mixer.state_dict(), teacher.layers[0].mixer.state_dict())
    torch.testing.assert_close(hybrid.layers[2].ffn.state_dict(), teacher.layers[2].ffn.state_dict())


def test_kl_selection_keeps_the_layers_that_matter_most():
    teacher = teacher_model()
    stage1 = build_student(teacher, full_layer_pattern(3, []))
    rows = torch.randint(0, 97, (4, 13)).numpy()
    keep, scores = select_by_kl(teacher, stage1, rows, n_full=2, linear={}, batch=2, chunk=7)
    assert sorted(scores) == [0, 1, 2] and all(v >= 0 for v in scores.values())
    assert keep == sorted(sorted(scores, key=scores.get)[:2])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: full_layer_pattern(3, [3]), "layer 3 is out of range"),
        (lambda t: full_layer_pattern(3, [1, 1]), "list a layer twice"),
        (lambda t: build_student(t, full_layer_pattern(3, [0]), {"expand_v": 2.0}), "cannot initialise v_proj"),
        (lambda t: student_args(build_student(t, "gdn").args, "full"), "must be a softmax-attention model"),
    ],
    ids=["out-of-range", "twice", "shapes", "linear-teacher"],
)
def test_bad_student_settings_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(teacher_model())
