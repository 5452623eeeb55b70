"""The table and figure registries, the config schema's lists and the report captions agree.

pytest tests/report/test_registry.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lt2.report.figures import FIGURES
from lt2.report.registry import Entry, bench_throughput_records, bench_train_records, synthetic_records
from lt2.report.tables import TABLES

REPO = Path(__file__).parents[2]
# report templates that are no table or figure: the workflow's own caption and the rules' shared template
NOT_ENTRIES = {"workflow", "caption"}


def schema_choices(kind: str) -> set[str]:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return set(schema["properties"]["report"]["properties"][kind]["items"]["enum"])


def test_schema_lists_exactly_the_registered_tables_and_figures():
    assert schema_choices("tables") == set(TABLES)
    assert schema_choices("figures") == set(FIGURES)


def test_every_entry_has_a_report_caption_and_every_caption_an_entry():
    captions = {p.stem for p in (REPO / "workflow" / "report").glob("*.rst")} - NOT_ENTRIES
    assert captions == set(TABLES) | set(FIGURES)
    for name, entry in {**TABLES, **FIGURES}.items():
        assert (REPO / "workflow" / "report" / f"{name}.rst").read_text().strip(), name
        assert entry.caption.strip() and "\n" not in entry.caption, name


def test_every_table_has_the_papers_numbers_file():
    for name in TABLES:
        assert (REPO / "config" / "paper" / f"{name}.csv").is_file(), name


def test_record_paths_per_recipe_and_from_the_config():
    entry = Entry(lambda paths: paths, "eval/ppl/{scale}/{recipe}.json", "c")
    assert entry.record_paths({}, ["tiny/a", "1B/b"]) == ["eval/ppl/tiny/a.json", "eval/ppl/1B/b.json"]
    config = {"bench": {"throughput": {"scale": "1B"}, "train": {"scale": "600M", "recipes": ["x", "y"]}}}
    assert TABLES["decode"].record_paths(config, ["tiny/a"]) == ["bench/1B/throughput.csv"]
    assert bench_train_records(config) == ["bench/train/600M/x.json", "bench/train/600M/y.json"]
    with pytest.raises(ValueError, match=r"bench\.throughput"):
        bench_throughput_records({"bench": {}})


def test_synthetic_records_and_the_heatmaps_paper_file():
    config = {"synthetic": {"arms": ["transformer", "gdn"], "loop_counts": [1, 8]}}
    expected = ["synthetic/transformer/T1.json", "synthetic/transformer/T8.json", "synthetic/gdn/T1.json",
                "synthetic/gdn/T8.json"]  # fmt: skip
    assert TABLES["synthetic"].record_paths(config, ["tiny/a"]) == expected
    assert FIGURES["synthetic_heatmap"].record_paths(config, ["tiny/a"]) == expected
    # the heatmap prints the paper's outcomes: its rule adds config/paper/synthetic.csv; other figures read none;
    # the table prints them itself too (beside every budget's rows), other tables through with_paper
    assert FIGURES["synthetic_heatmap"].paper == "synthetic" and FIGURES["training_curve"].paper is None
    assert TABLES["synthetic"].paper == "synthetic" and TABLES["lm"].paper is None
    assert (REPO / "config" / "paper" / f"{FIGURES['synthetic_heatmap'].paper}.csv").is_file()
    with pytest.raises(ValueError, match=r"synthetic\.arms"):
        synthetic_records({"synthetic": {"arms": [], "loop_counts": [1]}})
