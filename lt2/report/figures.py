"""Result figures: one function per figure draws onto a matplotlib Figure; one writer saves png + pdf.

Adding a figure = one function plus its `Entry` in `FIGURES` (the records it reads, a one-line caption; see
lt2.report.registry) and the caption paragraph `workflow/report/<name>.rst`. One wildcard rule in
workflow/rules/report.smk builds every figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run headless (SLURM nodes, CI)
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from lt2.files import atomic_path
from lt2.report import curves
from lt2.report.mixer_costs import mixer_costs
from lt2.report.registry import Entry, bench_throughput_records, bigram_records, mixer_cost_recipes


def decode_throughput(inputs: list[Path]) -> Figure:
    """Decode tokens/s (over the batch, top row) and prefill tokens/s (bottom row) against context, one line
    per model (and engine, where a run compared several), one column per batch size.

    Inputs: `lt2 bench throughput` CSVs. Points that ran out of memory are marked with an x at the top of
    the panel; the dotted lines are each model's HBM roofline of a decode step.
    """
    import pandas as pd

    points = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
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
            for i, (model, runs) in enumerate(at_batch.groupby("model", sort=True)):
                colour = f"C{i % 10}"
                ok = runs[runs["status"] == "ok"].sort_values("ctx")
                ax.plot(ok["ctx"], ok[column], "o-", color=colour, label=model)
                if column == "decode_tokens_per_s":
                    ax.plot(ok["ctx"], ok["roofline_tokens_per_s"], ":", color=colour)
                failed = runs[runs["status"] != "ok"]
                if len(failed):
                    top = at_batch[column].max()
                    ax.plot(failed["ctx"], [top] * len(failed), "x", color=colour, markersize=9)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("context (tokens)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{ylabel.split()[0]}, batch {batch}")
            ax.grid(alpha=0.3, which="both")
    axes[0][0].plot([], [], ":", color="gray", label="HBM roofline")
    axes[0][0].plot([], [], "x", color="gray", label="out of memory")
    axes[0][0].legend(fontsize="small")
    return fig


METRICS = "train/{scale}/{recipe}/metrics.jsonl"
FIGURES: dict[str, Entry] = {
    "decode_throughput": Entry(
        decode_throughput, bench_throughput_records, "Decode and prefill tokens/s against context"
    ),
    "grad_norm": Entry(curves.grad_norm, METRICS, "Gradient norm against tokens, per ablation group"),
    "mixer_costs": Entry(mixer_costs, mixer_cost_recipes, "Mixing FLOPs and decode cache against sequence length"),
    "training_curve": Entry(
        curves.training_curve, (METRICS, bigram_records), "Training and validation loss, per ablation group"
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
