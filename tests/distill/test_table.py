"""The `distill` table: teacher and student side by side, with the student / teacher ratios; the decode-cost
record of `lt2 distill bench`.

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
    for role, ppl, cache, step, tok in (("teacher", 20.0, 4 * 2**20, 8e6, 10.0), ("student", 21.0, 2**20, 4e6, 30.0)):
        for kind, record in (
            ("eval", {"ppl": ppl, "bits_per_byte": 1.0, "tokens": 100}),
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


def test_decode_cost_of_a_hybrid_is_below_its_attention_twin(tmp_path):
    costs = {}
    for pattern in ("full", "gdn,full"):
        tiny_model(pattern, 2, gated_attn=False).float().save_pretrained(tmp_path / pattern)
        costs[pattern] = decode_cost(tmp_path / pattern, ctx=24, batch=2, steps=2)
    assert costs["gdn,full"]["cache_bytes"] < costs["full"]["cache_bytes"]
    assert costs["full"]["decode_tokens_per_s"] > 0 and costs["full"]["mixer_map"] == [["full", "full"]] * 2
    with pytest.raises(ValueError, match="steps must be >= 1"):
        decode_cost(tmp_path / "full", ctx=4, steps=0)
