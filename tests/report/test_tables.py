"""Tables: per-recipe records -> DataFrame next to the paper's numbers -> md, csv, tex.

pytest tests/report/test_tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lt2.report.tables import TABLES, build_table, load_paper, recipe_id, to_latex, to_markdown, write_table


def ppl_record(path: Path, ppl: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": "x/shakespeare.val.jsonl", "tokens": 100, "ppl": ppl, "bits_per_byte": 2.5}))
    return path


def test_recipe_id_from_the_workflow_layout():
    assert recipe_id("results/t/eval/ppl/1B/lt2_gdn.json") == ("1B", "lt2_gdn")
    assert recipe_id("results/t/train/tiny/lt2_gdn/metrics.jsonl") == ("tiny", "lt2_gdn")


def test_lm_table_puts_paper_values_beside_rows_of_their_own_scale_only(tmp_path):
    inputs = [
        ppl_record(tmp_path / "eval/ppl/1B/b.json", 30.0),
        ppl_record(tmp_path / "eval/ppl/1B/a.json", 20.0),
        ppl_record(tmp_path / "eval/ppl/tiny/a.json", 200.0),
    ]
    paper = tmp_path / "lm.csv"
    paper.write_text(
        "table,row,column,value,source\n"
        "lm,1B/a,wiki_ppl,15.5,Table 2\n"
        "lm,600M/a,wiki_ppl,18.25,Table 2\n"
        "other,1B/a,acc,40,Table 3\n"
    )
    df = build_table("lm", inputs, paper).set_index(["scale", "recipe"])
    assert df.loc[("1B", "a"), "paper wiki_ppl [1B]"] == 15.5
    assert pd.isna(df.loc[("1B", "b"), "paper wiki_ppl [1B]"])  # no paper row for b: empty, never invented
    assert pd.isna(df.loc[("tiny", "a"), "paper wiki_ppl [1B]"])  # the tiny row never borrows the 1B number
    assert "paper wiki_ppl [600M]" not in df.columns  # no 600M row here: no 600M column
    assert "paper acc [1B]" not in df.columns  # another table's rows stay out
    tiny_only = build_table("lm", inputs[2:], paper)
    assert not [c for c in tiny_only.columns if c.startswith("paper")]


def test_lm_table_has_the_bigram_baseline_row_with_perplexity_only(tmp_path):
    zs = tmp_path / "eval/zeroshot/tiny/a.json"
    zs.parent.mkdir(parents=True)
    zs.write_text(json.dumps({"train_tokens": 1024, "args": {"limit": 10},
                              "tasks": {"piqa": {"acc": 0.5, "acc_norm": 0.6}, "boolq": {"acc": 0.4}}}))  # fmt: skip
    bigram = ppl_record(tmp_path / "eval/bigram/tiny/bigram_baseline.json", 40.5)
    bigram.write_text(json.dumps({**json.loads(bigram.read_text()), "train_tokens": 2_500_000}))
    inputs = [zs, ppl_record(tmp_path / "eval/ppl/tiny/a.json", 90.0), bigram]
    config = {"recipes": {"only": ["tiny/a"], "scales": ["tiny"]}}
    assert TABLES["lm"].record_paths(config, ["tiny/a"]) == [str(p.relative_to(tmp_path)) for p in inputs]
    df = build_table("lm", inputs).set_index("recipe")
    assert list(df.columns[:2]) == ["scale", "train tokens"]
    assert df.loc["bigram_baseline", "val ppl"] == 40.5 and df.loc["bigram_baseline", "train tokens"] == 2_500_000
    assert pd.isna(df.loc["bigram_baseline", "avg acc"]) and pd.isna(df.loc["bigram_baseline", "piqa"])
    assert df.loc["a", "train tokens"] == 1024 and df.loc["a", "val ppl"] == 90.0
    assert df.loc["a", "avg acc"] == pytest.approx(50.0)  # piqa acc_norm 60, boolq acc 40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("table,row,value\n", "columns must be"),
        ("table,row,column,value,source\nlm,1B/a,ppl,abc,Table 2\n", "non-numeric"),
        ("table,row,column,value,source\nlm,1B/a,ppl,1.0,\n", "source"),
        ("table,row,column,value,source\nlm,a,ppl,1.0,Table 2\n", "<scale>/<recipe>"),
    ],
    ids=["columns", "value", "source", "row-id"],
)
def test_paper_csv_is_checked(tmp_path, content, message):
    path = tmp_path / "lm.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_paper(path, "lm")


def test_committed_paper_csvs_are_valid():
    root = Path(__file__).parents[2] / "config" / "paper"
    for table in TABLES:
        load_paper(root / f"{table}.csv", table)


def test_unknown_table_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"known tables: ablation_gate, ablation_level, .*, model_size"):
        build_table("nope", [tmp_path / "x.json"])


def test_renderings(tmp_path):
    df = pd.DataFrame({"recipe": ["a_b"], "val ppl": [12.34567], "n": [3]})
    md = to_markdown(df)
    assert md.splitlines()[1] == "|---|---:|---:|" and "| a_b | 12.35 | 3 |" in md
    tex = to_latex(df, "Caption 100%", "lm")
    assert r"a\_b & 12.35 & 3 \\" in tex and r"Caption 100\%" in tex and r"\label{tab:lm}" in tex
    write_table(df, "lm", tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.tex")
    assert pd.read_csv(tmp_path / "t.csv").loc[0, "val ppl"] == 12.34567  # full precision in the CSV


def write_bench(path: Path) -> Path:
    """A `lt2 bench throughput` CSV laid out as the workflow writes it (.../bench/<scale>/throughput.csv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "model,engine,batch,ctx,status,decode_tokens_per_s,roofline_tokens_per_s,roofline_fraction\n"
        "looped_pure_full,graph,8,8192,ok,242.5,435.7,0.5566\n"
        "looped_pure_full,graph,8,16384,OOM,,,\n"
        "looped_pure_full,compile,8,8192,ok,390.0,435.7,0.8951\n"
        "looped_pure_full,compile,8,16384,OOM,,,\n"
        "looped_hybrid_gdn_dsa,graph,8,8192,ok,354.5,1951.5,0.1816\n"
        "looped_hybrid_gdn_dsa,graph,8,16384,error: RuntimeError: boom,,,\n"
    )
    return path


def test_decode_table_marks_oom_and_stands_beside_the_paper(tmp_path):
    csv = write_bench(tmp_path / "bench" / "1B" / "throughput.csv")
    paper = Path(__file__).parents[2] / "config" / "paper" / "decode.csv"
    table = build_table("decode", [csv], paper)
    assert sorted(zip(table["recipe"], table["engine"])) == [
        ("looped_hybrid_gdn_dsa", "graph"), ("looped_pure_full", "compile"), ("looped_pure_full", "graph")
    ]  # fmt: skip
    assert table.set_index(["recipe", "engine"]).loc[("looped_pure_full", "compile"), "decode tok/s B=8 ctx=8k"] == 390
    df = table[table["engine"] == "graph"].set_index("recipe")
    assert df.loc["looped_pure_full", "decode tok/s B=8 ctx=8k"] == 242.5
    assert df.loc["looped_pure_full", "decode tok/s B=8 ctx=16k"] == "OOM"
    assert df.loc["looped_hybrid_gdn_dsa", "decode tok/s B=8 ctx=16k"] == "error"
    assert df.loc["looped_pure_full", "roofline % B=8 ctx=8k"] == pytest.approx(55.66)
    assert df.loc["looped_pure_full", "scale"] == "1B"
    # the paper's 22 vs 125 tokens/s (batch 8, 8k) sit in their own column, labelled with the paper's scale
    assert df.loc["looped_pure_full", "paper decode tok/s B=8 ctx=8k [1B]"] == 22
    assert df.loc["looped_hybrid_gdn_dsa", "paper decode tok/s B=8 ctx=8k [1B]"] == 125


def test_decode_throughput_figure_draws_every_model_and_batch(tmp_path):
    from lt2.report.figures import build_figure, save_figure

    csv = write_bench(tmp_path / "bench" / "1B" / "throughput.csv")
    fig = build_figure("decode_throughput", [csv])
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    expected = {"looped_pure_full [graph]", "looped_pure_full [compile]", "looped_hybrid_gdn_dsa [graph]"}
    assert expected | {"out of memory"} <= set(labels)
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "f.pdf").stat().st_size > 1000


def test_recorded_h100_baseline_reports(tmp_path):
    """The committed H100 baseline (the CUDA-graph engine alone) at the workflow's own path."""
    recorded = Path(__file__).parents[2] / "results" / "paper" / "bench" / "1B" / "throughput.csv"
    df = build_table("decode", [recorded]).set_index("recipe")
    assert set(df["engine"]) == {"graph"} and set(df["scale"]) == {"1B"}
    assert df.loc["looped_pure_full", "decode tok/s B=8 ctx=16k"] == "OOM"
    assert df.loc["looped_pure_full", "decode tok/s B=8 ctx=8k"] == pytest.approx(242, abs=1)


def test_train_throughput_table_reads_bench_train_records(tmp_path):
    from dataclasses import asdict

    from lt2.bench.train import TrainBench

    common = dict(device="NVIDIA H100 80GB HBM3", world_size=1, dtype="bf16", seq_len=4096, grad_accum=1,
                  compile=True, activation_checkpointing="none", loss_chunk=8192, steps=300, warmup_steps=20,
                  train_flops_per_token=3.1e9, peak_tflops=989.0)  # fmt: skip
    ok = TrainBench(recipe="looped_pure_full", status="ok", batch_size=2, warmup_s=60.0, step_time_s=0.1,
                    tokens_per_s=81920.0, tokens_per_s_per_device=81920.0, achieved_tflops_per_device=254.0,
                    mfu=0.2568, peak_mem_gib=61.5, reserved_mem_gib=70.0, final_loss=11.7, **common)  # fmt: skip
    oom = TrainBench(recipe="looped_pure_gdn", status="OOM", batch_size=4, warmup_s=None, step_time_s=None,
                     tokens_per_s=None, tokens_per_s_per_device=None, achieved_tflops_per_device=None, mfu=None,
                     peak_mem_gib=None, reserved_mem_gib=None, final_loss=None, **common)  # fmt: skip
    paths = []
    for rec in (ok, oom):
        path = tmp_path / "bench" / "train" / "600M" / f"{rec.recipe}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(rec)))
        paths.append(path)
    paper = Path(__file__).parents[2] / "config" / "paper" / "train_throughput.csv"  # header only
    df = build_table("train_throughput", paths, paper).set_index("recipe")
    assert not [c for c in df.columns if c.startswith("paper")]
    assert df.loc["looped_pure_full", "MFU %"] == pytest.approx(25.68)
    assert df.loc["looped_pure_full", "scale"] == "600M" and df.loc["looped_pure_full", "micro-batch"] == "2 x 4096"
    assert df.loc["looped_pure_gdn", "status"] == "OOM" and pd.isna(df.loc["looped_pure_gdn", "MFU %"])
