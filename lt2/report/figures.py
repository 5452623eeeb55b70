"""Result figures: one function per figure draws onto a matplotlib Figure; one writer saves png + pdf.

Adding a figure = one function plus its `Entry` in `FIGURES` (the records it reads, a one-line caption; see
lt2.report.registry) and the caption paragraph `workflow/report/<name>.rst`. One wildcard rule in
workflow/rules/report.smk builds every figure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run headless (SLURM nodes, CI)
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from lt2.files import atomic_path
from lt2.report import curves
from lt2.report.mixer_costs import mixer_costs
from lt2.report.registry import (
    Entry,
    bench_throughput_records,
    bigram_records,
    longctx_records,
    mixer_cost_recipes,
    recipe_id,
    synthetic_records,
)
from lt2.synth.report import synthetic_heatmap


def decode_throughput(inputs: list[Path]) -> Figure:
    """Decode tokens/s (over the batch, top row) and prefill tokens/s (bottom row) against context, one line
    per model (and engine, where a run compared several), one column per batch size.

    Inputs: `lt2 bench throughput` CSVs, and optionally config/paper/decode.csv (a CSV with a `table`
    column), whose points are drawn as stars in the decode panel of their batch. Points that ran out of memory
    are marked with an x at the top of the panel; the dotted lines are each model's HBM roofline of a decode
    step.
    """
    import pandas as pd

    frames = [pd.read_csv(p) for p in inputs]
    paper = pd.concat([f for f in frames if "table" in f] or [pd.DataFrame()], ignore_index=True)
    points = pd.concat([f for f in frames if "table" not in f], ignore_index=True)
    if points["engine"].nunique() > 1:
        points["model"] = points["model"] + " [" + points["engine"] + "]"
    batches = sorted(points["batch"].unique())
    rows = [("decode_tokens_per_s", "decode tokens/s")]
    if "prefill_tokens_per_s" in points:
        rows.append(("prefill_tokens_per_s", "prefill tokens/s"))
    fig, axes = plt.subplots(
        len(rows), len(batches), figsize=(5.2 * len(batches), 3.8 * len(rows)), layout="constrained", squeeze=False
    )
    for row, (column, ylabel) in enumerate(rows):
        for ax, batch in zip(axes[row], batches, strict=True):
            at_batch = points[points["batch"] == batch]
            colours = {}
            for i, (model, runs) in enumerate(at_batch.groupby("model", sort=True)):
                colour = colours[model] = f"C{i % 10}"
                ok = runs[runs["status"] == "ok"].sort_values("ctx")
                ax.plot(ok["ctx"], ok[column], "o-", color=colour, label=model)
                if column == "decode_tokens_per_s":
                    ax.plot(ok["ctx"], ok["roofline_tokens_per_s"], ":", color=colour)
                failed = runs[runs["status"] != "ok"]
                if len(failed):
                    top = at_batch[column].max()
                    ax.plot(failed["ctx"], [top] * len(failed), "x", color=colour, markersize=9)
            if column == "decode_tokens_per_s":
                for model, ctx, value in _paper_decode_points(paper, batch):
                    ax.plot([ctx], [value], "*", color=colours.get(model, "black"), markersize=13, mec="black")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("context (tokens)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{ylabel.split()[0]}, batch {batch}")
            ax.grid(alpha=0.3, which="both")
    axes[0][0].plot([], [], ":", color="gray", label="HBM roofline")
    axes[0][0].plot([], [], "x", color="gray", label="out of memory")
    if len(paper):
        axes[0][0].plot([], [], "*", color="gray", mec="black", markersize=11, label="paper (H100)")
    axes[0][0].legend(fontsize="small")
    return fig


def _paper_decode_points(paper, batch: int) -> list[tuple[str, int, float]]:
    """(model, ctx, tokens/s) of the paper's decode rows at `batch`: columns `decode tok/s B=<b> ctx=<n>k`,
    rows `<scale>/<recipe>` (the model is the recipe, as in the bench CSVs)."""
    found = []
    for row in paper.itertuples(index=False) if len(paper) else ():
        match = re.fullmatch(r"decode tok/s B=(\d+) ctx=(\d+)k", row.column)
        if row.table == "decode" and match and int(match[1]) == batch:
            found.append((row.row.split("/")[-1], int(match[2]) * 1024, float(row.value)))
    return found


def niah_context(inputs: list[Path]) -> Figure:
    """NIAH accuracy against context length, one line per model, one panel per NIAH task; each model's training
    length is marked by a dotted vertical line in its colour (points right of it are extrapolation).

    Inputs: `lt2 eval longctx` records.
    """
    records = [(recipe_id(p), json.loads(Path(p).read_text())) for p in sorted(inputs, key=recipe_id)]
    tasks = sorted({task for _, rec in records for task in rec["niah"]})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.0 * len(tasks), 3.4), layout="constrained", squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for (scale, recipe), rec in records:
            points = sorted((int(n), res["acc"]) for n, res in rec["niah"].get(task, {}).items())
            (line,) = ax.plot(*zip(*points), "o-", label=f"{recipe} ({scale})")
            ax.axvline(rec["train_seq_len"], linestyle=":", color=line.get_color())
        ax.set_xscale("log", base=2)
        ticks = sorted({int(n) for _, rec in records for n in rec["niah"].get(task, {})} |
                       {rec["train_seq_len"] for _, rec in records})  # fmt: skip
        ax.set_xticks(ticks, [str(t) for t in ticks], minor=False)
        ax.minorticks_off()
        ax.set_xlabel("context length (tokens)")
        ax.set_ylim(-5, 105)
        ax.set_title(task.removeprefix("lt2_").replace("niah_single_", "NIAH-Single-"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].plot([], [], ":", color="gray", label="training length")
    axes[0][-1].legend(fontsize="small")
    return fig


METRICS = "train/{scale}/{recipe}/metrics.jsonl"
FIGURES: dict[str, Entry] = {
    "decode_throughput": Entry(
        decode_throughput,
        bench_throughput_records,
        "Decode and prefill tokens/s against context",
        paper="decode",
    ),
    "grad_norm": Entry(curves.grad_norm, METRICS, "Gradient norm against tokens, per ablation group"),
    "mixer_costs": Entry(mixer_costs, mixer_cost_recipes, "Mixing FLOPs and decode cache against sequence length"),
    "niah_context": Entry(niah_context, longctx_records, "NIAH accuracy against context length"),
    "training_curve": Entry(
        curves.training_curve, (METRICS, bigram_records), "Training and validation loss, per ablation group"
    ),
    "synthetic_heatmap": Entry(
        synthetic_heatmap,
        synthetic_records,
        "Largest curriculum stage passed per arm and loop count",
        paper="synthetic",
    ),
}


def build_figure(name: str, inputs: list[str | Path]) -> Figure:
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known figures: {', '.join(sorted(FIGURES))}")
    if not inputs:
        raise ValueError(f"figure {name!r} needs at least one input")
    return FIGURES[name].build([Path(p) for p in inputs])


def save_figure(fig: Figure, *paths: str | Path) -> None:
    """Save to every path (format from its suffix), each atomically (lt2.files)."""
    for path in map(Path, paths):
        # pdf/png embed a creation date by default; leave it out so a re-run gives the same bytes
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, metadata=metadata)
    plt.close(fig)
