"""Result tables: one function per table turns its input records into a DataFrame; one writer renders it.

Adding a table = one function plus its `Entry` in `TABLES` (the records it reads and a one-line caption;
see lt2.report.registry), the caption paragraph `workflow/report/<name>.rst` and the paper's numbers
`config/paper/<name>.csv`. One wildcard rule in workflow/rules/report.smk builds every table. Every table
function takes the input paths (one record per recipe, laid out by the workflow as `.../<scale>/<recipe>.json`
or `.../<scale>/<recipe>/<file>`, or a benchmark's own records) and returns one row per recipe.

Reproduced values stand next to the paper's: `config/paper/<table>.csv` holds the paper's numbers in long
form (table, row, column, value, source) with rows named `<scale>/<recipe>` like the recipe files. A
reproduced row is matched to paper rows of the same recipe AND scale only, in columns `paper <column> [<scale>]`;
paper columns that no row fills are left out, so a tiny run shows no paper numbers at all. An entry that
names a `paper` table (the synthetic one) reads that file among its inputs and prints the numbers itself.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from lt2.report.eval_tables import PPL, ZEROSHOT, ablation_recipes, ablation_table, eval_row, lm_table
from lt2.report.provenance import atomic_write_text
from lt2.report.registry import (
    DISTILL_KINDS,
    Entry,
    bench_throughput_records,
    bench_train_records,
    bigram_records,
    distill_records,
    longctx_records,
    recipe_id,
    synthetic_records,
)
from lt2.synth.report import synthetic_table

PAPER_COLUMNS = ["table", "row", "column", "value", "source"]


# ------------------------------------------------------------------ inputs
def load_paper(path: str | Path, table: str) -> pd.DataFrame:
    """The paper's numbers for `table` (possibly none yet): columns row, column, value, source."""
    df = pd.read_csv(path, dtype={"table": str, "row": str, "column": str, "source": str})
    if list(df.columns) != PAPER_COLUMNS:
        raise ValueError(f"{path}: columns must be {PAPER_COLUMNS}, found {list(df.columns)}")
    df = df[df["table"] == table]
    bad = df[pd.to_numeric(df["value"], errors="coerce").isna()]
    if len(bad):
        raise ValueError(f"{path}: non-numeric value in row {bad.iloc[0]['row']!r} column {bad.iloc[0]['column']!r}")
    if df["source"].isna().any() or (df["source"].str.strip() == "").any():
        raise ValueError(f"{path}: every paper number needs a source (table/figure of the paper)")
    unnamed = df[~df["row"].str.contains("/", regex=False)]
    if len(unnamed):
        raise ValueError(f"{path}: rows are named <scale>/<recipe>, found {unnamed['row'].iloc[0]!r}")
    return df.assign(value=pd.to_numeric(df["value"]))


def with_paper(df: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Append `paper <column> [<scale>]` columns to a table whose rows have `recipe` and `scale`: a paper value
    lands only on the row of its own scale and recipe; columns that no row fills are dropped."""
    if paper.empty:
        return df
    paper = paper.assign(
        scale=paper["row"].str.split("/").str[0],
        recipe=paper["row"].str.split("/").str[-1],
    )
    paper = paper.assign(label="paper " + paper["column"] + " [" + paper["scale"] + "]")
    wide = paper.pivot_table(index=["scale", "recipe"], columns="label", values="value", aggfunc="first")
    wide.columns.name = None
    out = df.merge(wide, how="left", left_on=["scale", "recipe"], right_index=True)
    return out.drop(columns=[c for c in wide.columns if out[c].isna().all()])


# ------------------------------------------------------------------ tables
def per_recipe_table(inputs: list[Path], columns: Callable[[dict], dict]) -> pd.DataFrame:
    """One row per per-recipe JSON record: recipe and scale (from the path), then `columns(record)`."""
    rows = []
    for path in inputs:
        scale, recipe = recipe_id(path)
        rows.append({"recipe": recipe, "scale": scale, **columns(json.loads(Path(path).read_text()))})
    return pd.DataFrame(rows)


def model_size_table(inputs: list[Path]) -> pd.DataFrame:
    """Paper Table 1 quantities from `lt2 model-info --json` records: size, depth, FLOPs, decode cache."""

    def columns(info: dict) -> dict:
        mixers = pd.Series([m for row in info["mixer_map"] for m in row]).value_counts()
        return {
            "params (M)": info["params"] / 1e6,
            "non-embedding params (M)": info["non_embedding_params"] / 1e6,
            "effective depth": info["effective_depth"],
            "mixers (loop x layer)": ", ".join(f"{m} x{n}" for m, n in mixers.items()),
            "context": info["seq_len"],
            "train GFLOPs/token": info["train_flops_per_token"] / 1e9,
            "KV cache KiB/token": info["cache_bytes_per_token"] / 1024,
            "fixed state MiB": info["state_bytes"] / 2**20,
        }

    return per_recipe_table(inputs, columns)


def train_throughput_table(inputs: list[Path]) -> pd.DataFrame:
    """Training speed per recipe from `lt2 bench train` records (`.../bench/train/<scale>/<recipe>.json`):
    tokens/s per device, model FLOPs utilisation against the device's dense peak, peak memory."""

    def columns(rec: dict) -> dict:
        return {
            "device": f"{rec['device']} x {rec['world_size']}",
            "micro-batch": f"{rec['batch_size']} x {rec['seq_len']}",
            "status": rec["status"],
            "tokens/s per device": rec["tokens_per_s_per_device"],
            "MFU %": 100 * rec["mfu"] if rec["mfu"] is not None else None,
            "peak memory GiB": rec["peak_mem_gib"],
            "train GFLOPs/token": rec["train_flops_per_token"] / 1e9,
        }

    return per_recipe_table(inputs, columns)


def _ctx_label(ctx: int) -> str:
    return f"{ctx // 1024}k" if ctx % 1024 == 0 else str(ctx)


def decode_table(inputs: list[Path]) -> pd.DataFrame:
    """Decode throughput (tokens/s over the batch) per model, engine, batch and context; OOM where it ran out
    of memory.

    Inputs: `lt2 bench throughput` CSVs laid out as `.../bench/<scale>/throughput.csv`, all models of one run.
    """
    rows: dict[tuple[str, str, str], dict] = {}
    for path in inputs:
        scale = Path(path).parent.name
        points = pd.read_csv(path)
        for p in points.itertuples(index=False):
            key = (scale, p.model, p.engine)
            row = rows.setdefault(key, {"recipe": p.model, "scale": scale, "engine": p.engine})
            column = f"decode tok/s B={p.batch} ctx={_ctx_label(p.ctx)}"
            row[column] = p.decode_tokens_per_s if p.status == "ok" else p.status.split(":")[0]
            if p.status == "ok":
                row[f"roofline % B={p.batch} ctx={_ctx_label(p.ctx)}"] = 100 * p.roofline_fraction
    df = pd.DataFrame(list(rows.values()))
    decode = [c for c in df.columns if c.startswith("decode")]
    roofline = [c for c in df.columns if c.startswith("roofline")]
    return df[["recipe", "scale", "engine", *decode, *roofline]]


# Table 5's columns: lm-eval recall task -> the paper's column, NIAH task -> the paper's prefix.
RECALL_COLUMNS = {"swde": "SWDE", "squad_completion": "SQuAD", "fda": "FDA", "based_triviaqa": "TriviaQA",
                  "based_nq": "NQ", "based_drop": "DROP"}  # fmt: skip
NIAH_COLUMNS = {"lt2_niah_single_1": "NIAH-S1", "lt2_niah_single_2": "NIAH-S2", "lt2_niah_single_3": "NIAH-S3"}


def _length_label(tokens: int) -> str:
    """The paper's context labels: 1024 -> 1K, 4096 -> 4K; other lengths stay numbers (the tiny 384)."""
    return f"{tokens // 1024}K" if tokens % 1024 == 0 else str(tokens)


def long_context_table(inputs: list[Path]) -> pd.DataFrame:
    """Long context (the paper's Table 5): recall suite (contains %) and NIAH accuracy (%) per context length.

    Inputs: `lt2 eval longctx` records. A recall task that did not run shows why ("not run: needs <dataset>
    from the Hub"), so no column is silently missing.
    """

    def columns(rec: dict) -> dict:
        row = {"trained at": rec["train_seq_len"], "NIAH samples/length": rec["num_samples"]}
        for task, column in RECALL_COLUMNS.items():
            res = rec["recall"].get(task)
            if res is not None:
                row[column] = res["contains"] if res["status"] == "ok" else res["status"]
        for task, prefix in NIAH_COLUMNS.items():
            for length, res in rec["niah"].get(task, {}).items():
                row[f"{prefix}@{_length_label(int(length))}"] = res["acc"]
        return row

    return per_recipe_table(inputs, columns)


def distill_table(inputs: list[Path]) -> pd.DataFrame:
    """Teacher vs distilled student from `.../distill/<scale>/{zeroshot,eval,longctx,bench}/{teacher,student}.json`:
    zero-shot average accuracy (the `lm` table's metric rule), validation perplexity, mean NIAH accuracy over
    tasks and context lengths, and decode cost, with the student / teacher ratios (points of difference for
    accuracies)."""
    rows: dict[tuple[str, str], dict] = {}
    for path in inputs:
        path = Path(path)
        kind, scale, role = path.parent.name, path.parent.parent.name, path.stem
        rec = json.loads(path.read_text())
        row = rows.setdefault((scale, role), {"recipe": role, "scale": scale})
        if kind == "zeroshot":
            zs = eval_row({"zeroshot": rec})
            row.update({"zero-shot avg acc": zs["avg acc"], "zero-shot docs/task": zs["docs/task"]})
        elif kind == "longctx":
            accs = [res["acc"] for per_length in rec["niah"].values() for res in per_length.values()]
            row.update(
                {"NIAH avg acc": sum(accs) / len(accs), "NIAH lengths": ",".join(map(str, rec["context_lengths"]))}
            )
        elif kind == "eval":
            row.update({"val ppl": rec["ppl"], "val bits/byte": rec["bits_per_byte"], "eval tokens": rec["tokens"]})
        elif kind == "bench":
            mixers = pd.Series([m for loop in rec["mixer_map"] for m in loop]).value_counts()
            row.update({
                "params (M)": rec["params"] / 1e6,
                "mixers (loop x layer)": ", ".join(f"{m} x{n}" for m, n in mixers.items()),
                "decode ctx": rec["ctx"],
                "decode cache MiB": rec["cache_bytes"] / 2**20,
                "decode step MB": rec["decode_step_bytes"] / 1e6,
                "decode tok/s": rec["decode_tokens_per_s"],
                "decode device": rec["device"],
            })  # fmt: skip
        else:
            raise ValueError(f"{path}: expected .../distill/<scale>/({'|'.join(DISTILL_KINDS)})/<role>.json")
    df = pd.DataFrame(list(rows.values()))
    for scale in df["scale"].unique():
        teacher = df[(df["scale"] == scale) & (df["recipe"] == "teacher")]
        if teacher.empty:
            continue
        for column in ("val ppl", "decode cache MiB", "decode step MB", "decode tok/s"):
            if column in df:
                df.loc[df["scale"] == scale, f"{column} vs teacher"] = df[column] / teacher[column].iloc[0]
        for column in ("zero-shot avg acc", "NIAH avg acc"):  # accuracies in %: student - teacher, in points
            if column in df:
                df.loc[df["scale"] == scale, f"{column} vs teacher (pts)"] = df[column] - teacher[column].iloc[0]
    return df


TABLES: dict[str, Entry] = {
    "decode": Entry(decode_table, bench_throughput_records, "Decode throughput (tokens/s) against batch and context"),
    "distill": Entry(distill_table, distill_records, "Distillation: teacher vs student quality and decode cost"),
    "long_context": Entry(
        long_context_table, longctx_records, "Long context: recall-intensive tasks and NIAH (the paper's Table 5)"
    ),
    "lm": Entry(
        lm_table,
        (ZEROSHOT, PPL, bigram_records),
        "Zero-shot accuracy (acc_norm where defined, else acc) and perplexity, with the bigram baseline",
    ),
    "model_size": Entry(
        model_size_table, "model_info/{scale}/{recipe}.json", "Model sizes and analytic costs (the paper's Table 1)"
    ),
    "train_throughput": Entry(
        train_throughput_table, bench_train_records, "Training throughput: tokens/s, MFU and peak memory"
    ),
    "synthetic": Entry(
        synthetic_table,
        synthetic_records,
        "State tracking + recall: largest curriculum stage passed (Figure 9)",
        paper="synthetic",  # the paper's outcomes beside every budget's (lt2.synth.report.synthetic_table)
    ),
    **{
        name: Entry(ablation_table(name), (ZEROSHOT, PPL), caption, select=ablation_recipes(name))
        for name, caption in (
            ("ablation_ratio", "Hybrid ratio full:GDN (Table 3a): zero-shot accuracy and perplexity"),
            ("ablation_placement", "Placement of the full layers (Table 3b): zero-shot accuracy and perplexity"),
            ("ablation_level", "Hybrid level (Table 3c): zero-shot accuracy and perplexity"),
            ("ablation_gate", "Output gate ablation: zero-shot accuracy and perplexity"),
        )
    },
}


def build_table(name: str, inputs: list[str | Path], paper_csv: str | Path | None = None) -> pd.DataFrame:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(sorted(TABLES))}")
    if not inputs:
        raise ValueError(f"table {name!r} needs at least one input record")
    entry = TABLES[name]
    paths = [Path(p) for p in inputs]
    if entry.paper is not None and paper_csv is not None:  # the build prints the paper's numbers itself
        load_paper(paper_csv, entry.paper)  # checks the file (named rows, sources)
        paths.append(Path(paper_csv))
    df = entry.build(paths)
    # ablations list their settings in the paper's order; other tables sort by scale and recipe
    df = df.sort_values(["scale"] if entry.select else ["scale", "recipe"], kind="stable")
    if paper_csv is not None and entry.paper is None:
        df = with_paper(df, load_paper(paper_csv, name))
    return df.reset_index(drop=True)


# ------------------------------------------------------------------ rendering
def _cell(value) -> str:
    if value is pd.NA:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def to_markdown(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(t) else "---" for t in df.dtypes) + "|"
    body = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}  # fmt: skip


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); numbers right-aligned."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(t) else "l" for t in df.dtypes)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\label{{tab:{label}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in df.columns) + r" \\",
        r"\midrule",
        *(" & ".join(_latex_escape(_cell(v)) for v in row) + r" \\" for row in df.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, name: str, md: str | Path, csv: str | Path, tex: str | Path) -> None:
    """Write the three renderings, each atomically. The CSV keeps full precision for other tools."""
    buffer = io.StringIO()
    df.to_csv(buffer, index=False)
    atomic_write_text(csv, buffer.getvalue())
    atomic_write_text(md, to_markdown(df))
    atomic_write_text(tex, to_latex(df, TABLES[name].caption, name))
