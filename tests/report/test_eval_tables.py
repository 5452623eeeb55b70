"""Table 2 and the ablation tables: the metric rule, the average, the budget columns, ablation rows in the
paper's order with `not run` settings, and the committed paper numbers on rows of their own scale.

pytest tests/report/test_eval_tables.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from lt2.report.eval_tables import ABLATIONS, task_accuracy
from lt2.report.tables import TABLES, build_table, to_markdown

PAPER = Path(__file__).parents[2] / "config" / "paper"


def write_records(root: Path, scale: str, recipe: str, acc: float, ppl: float) -> list[Path]:
    zs = root / "eval" / "zeroshot" / scale / f"{recipe}.json"
    pp = root / "eval" / "ppl" / scale / f"{recipe}.json"
    for path in (zs, pp):
        path.parent.mkdir(parents=True, exist_ok=True)
    tasks = {
        "hellaswag": {"acc": acc, "acc_norm": acc + 0.1, "acc_stderr": 0.01, "documents": 10},
        "boolq": {"acc": acc, "acc_stderr": 0.01, "documents": 10},
    }
    zs.write_text(json.dumps({"tasks": tasks, "train_tokens": 61440, "args": {"limit": 10}}))
    pp.write_text(json.dumps({"data": "x/shakespeare.val.jsonl", "ppl": ppl}))
    return [zs, pp]


def test_metric_rule_is_acc_norm_where_defined():
    assert task_accuracy({"acc": 0.3, "acc_norm": 0.4}) == 0.4 and task_accuracy({"acc": 0.3}) == 0.3


def test_lm_table_joins_zeroshot_and_perplexity(tmp_path):
    inputs = write_records(tmp_path, "tiny", "looped_pure_full", 0.5, 20.0)
    inputs += write_records(tmp_path, "1B", "looped_pure_full", 0.2, 9.0)
    df = build_table("lm", inputs, PAPER / "lm.csv").set_index("scale")
    tiny, big = df.loc["tiny"], df.loc["1B"]
    assert math.isclose(tiny["hellaswag"], 60.0) and math.isclose(tiny["boolq"], 50.0)
    assert math.isclose(tiny["avg acc"], 55.0) and tiny["val ppl"] == 20.0
    assert tiny["train tokens"] == 61440 and tiny["docs/task"] == "10"
    assert big["paper avg acc [1B]"] == 59.27 and big["paper val ppl [1B]"] == 9.87  # Looped Transformer, 1.3B
    assert math.isnan(tiny["paper avg acc [1B]"])  # never beside a tiny row


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_rows_follow_the_paper_and_mark_missing_settings(tmp_path, name):
    label, settings = ABLATIONS[name]
    first, *rest = [recipe for _, recipe in settings]
    inputs = write_records(tmp_path, "1B", first, 0.4, 10.0)
    df = build_table(name, inputs, PAPER / f"{name}.csv")
    assert list(df[label]) == [setting for setting, _ in settings]
    assert list(df["status"]) == ["ok"] + ["not run"] * len(rest)
    assert df.loc[0, "val ppl"] == 10.0 and not math.isnan(df.loc[0, "paper avg acc [1B]"])
    assert df.loc[0, "train tokens"] == 61440 and pd.isna(df.loc[1, "train tokens"])
    assert "| 61440 |" in to_markdown(df) and "|  |" in to_markdown(df)  # an integer, blank where not run
    assert set(TABLES[name].select) == {recipe for _, recipe in settings}


def test_ablation_reads_only_its_recipes():
    paths = TABLES["ablation_gate"].record_paths({}, ["tiny/looped_pure_full", "tiny/looped_pure_gdn"])
    assert paths == ["eval/zeroshot/tiny/looped_pure_full.json", "eval/ppl/tiny/looped_pure_full.json"]
