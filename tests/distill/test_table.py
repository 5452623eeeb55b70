"""The `distill` table: teacher and student side by side (zero-shot, perplexity, NIAH, decode cost), with the
student vs teacher ratios and differences; the decode-cost record of `lt2 distill bench`.

Run: pytest tests/distill/test_table.py
"""

from __future__ import annotations

import json

import pytest

from lt2.distill.bench import decode_cost
from lt2.report.tables import build_table
from lt2.testing import tiny_model


def test_distill_table_puts_teacher_and_student_side_by_side(tmp_path):
    root = tmp_path / "distill" / "tiny"
    paths = []
    for role, ppl, cache, step, tok, acc, niah in (
        ("teacher", 20.0, 4 * 2**20, 8e6, 10.0, (0.5, 0.7), ((100.0, 80.0), (60.0, 40.0))),
        ("student", 21.0, 2**20, 4e6, 30.0, (0.4, 0.6), ((90.0, 70.0), (50.0, 30.0))),
    ):
        for kind, record in (
            # acc_norm where the task defines it (hellaswag), else acc (boolq): the lm table's metric rule
            ("zeroshot", {"tasks": {"hellaswag": {"acc": 0.0, "acc_norm": acc[0]}, "boolq": {"acc": acc[1]}},
                          "args": {"limit": 8}}),
            ("eval", {"ppl": ppl, "bits_per_byte": 1.0, "tokens": 100}),
            ("longctx", {"context_lengths": [64, 128], "niah": {
                task: {"64": {"acc": a}, "128": {"acc": b}}
                for task, (a, b) in zip(("lt2_niah_single_1", "lt2_niah_single_2"), niah, strict=True)}}),
            ("bench", {"params": 2e6, "mixer_map": [["full", "gdn"]], "ctx": 64, "cache_bytes": cache,
                       "decode_step_bytes": step, "decode_tokens_per_s": tok, "device": "cpu"}),
        ):  # fmt: skip
            path = root / kind / f"{role}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
            paths.append(path)
    df = build_table("distill", paths).set_index("recipe")
    assert list(df.index) == ["student", "teacher"] and set(df["scale"]) == {"tiny"}
    assert df.loc["student", "val ppl vs teacher"] == pytest.approx(1.05)
    assert df.loc["student", "decode cache MiB vs teacher"] == pytest.approx(0.25)
    assert df.loc["student", "decode tok/s vs teacher"] == pytest.approx(3.0)
    assert df.loc["teacher", "decode step MB"] == pytest.approx(8.0)
    assert df.loc["teacher", "zero-shot avg acc"] == pytest.approx(60.0)  # (50 + 70) / 2, in %
    assert df.loc["student", "zero-shot avg acc vs teacher (pts)"] == pytest.approx(-10.0)
    assert df.loc["student", "zero-shot docs/task"] == "8"
    assert df.loc["teacher", "NIAH avg acc"] == pytest.approx(70.0)  # mean over tasks and lengths
    assert df.loc["student", "NIAH avg acc vs teacher (pts)"] == pytest.approx(-10.0)
    assert df.loc["teacher", "NIAH lengths"] == "64,128"
    with pytest.raises(ValueError, match="zeroshot"):
        bad = root / "wrong" / "teacher.json"
        bad.parent.mkdir()
        bad.write_text("{}")
        build_table("distill", [bad])


def test_decode_cost_of_a_hybrid_is_below_its_attention_twin(tmp_path):
    costs = {}
    for pattern in ("full", "gdn,full"):
        tiny_model(pattern, 2, gated_attn=False).float().save_pretrained(tmp_path / pattern)
        costs[pattern] = decode_cost(tmp_path / pattern, ctx=24, batch=2, steps=2)
    assert costs["gdn,full"]["cache_bytes"] < costs["full"]["cache_bytes"]
    assert costs["full"]["decode_tokens_per_s"] > 0 and costs["full"]["mixer_map"] == [["full", "full"]] * 2
    with pytest.raises(ValueError, match="steps must be >= 1"):
        decode_cost(tmp_path / "full", ctx=4, steps=0)
