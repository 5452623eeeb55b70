"""Training-curve figures: loss and gradient norm against tokens, as small multiples grouped by ablation.

One panel per (scale, group): a group is one comparison the paper makes (the mixers, the Full:GDN ratio,
the placement of the full layers, the loop-level schedules, the output gate, the LT2 hybrids, the long-context
rows of Table 5, the non-looped baselines), so every panel holds a handful of lines with distinct colours,
and a recipe may appear in several panels (the 1:4 interleave is the reference of the ratio, placement and
gate ablations). Recipes that no group names land in "other". Panels share their y axis, so levels compare
across panels; the bigram baseline of each scale (a `lt2 eval bigram` record among the inputs) is a grey line
in every loss panel. The layout holds at paper scale: 60 recipes over two scales give 17 panels.

Inputs: `.../train/<scale>/<recipe>/metrics.jsonl` (written by `lt2 train`) and optionally
`.../eval/bigram/<scale>/bigram_baseline.json`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from lt2.report.tables import recipe_id

# (panel title, recipe names in legend order); a name absent from the inputs is skipped.
GROUPS: list[tuple[str, list[str]]] = [
    ("pure mixers: attention, sparse",
     ["looped_pure_full", "looped_pure_window", "looped_pure_nsa", "looped_pure_dsa"]),
    ("pure mixers: linear",
     ["looped_pure_gdn", "looped_pure_kda", "looped_pure_deltanet", "looped_pure_mamba2", "looped_pure_hgrn2",
      "looped_pure_retnet"]),
    ("LT2 hybrids (Table 2)", ["looped_pure_full", "looped_hybrid_gdn_4to1", "looped_hybrid_gdn_dsa"]),
    ("full : GDN ratio (Table 3a)",
     ["looped_pure_full", "looped_hybrid_ratio_1to1", "looped_hybrid_gdn_4to1", "looped_hybrid_ratio_1to6",
      "looped_hybrid_ratio_1to12", "looped_pure_gdn"]),
    ("placement of the full layers (Table 3b)",
     ["looped_hybrid_gdn_4to1", "looped_hybrid_bookend", "looped_hybrid_front", "looped_hybrid_back"]),
    ("level schedule (Table 3c)",
     ["looped_pure_window", "looped_hybrid_128_256_512_full", "looped_hybrid_full_512_256_128",
      "looped_hybrid_random_vote"]),
    ("output gate",
     ["looped_pure_full", "looped_pure_full_gated", "looped_hybrid_gdn_4to1", "looped_hybrid_gdn_4to1_gated"]),
    ("long context (Table 5)",
     ["longctx_transformer", "longctx_gdn", "longctx_mamba2", "longctx_looped_transformer", "longctx_looped_gdn",
      "longctx_looped_mamba2", "longctx_hybrid_full_gdn", "longctx_hybrid_gdn_dsa"]),
]  # fmt: skip
BASELINE_PREFIX = "baseline_"  # the non-looped recipes (loop_count 1) get a panel of their own
BIGRAM = "bigram_baseline"
NCOLS = 4


def short_label(recipe: str) -> str:
    """looped_hybrid_ratio_1to6 -> hybrid ratio 1to6: the panel title already says what is compared."""
    return re.sub(r"^looped_", "", recipe).replace("_", " ")


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a `metrics.jsonl` written by `lt2 train` (one JSON object per line)."""
    records = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i}: not JSON ({err})") from None
    return records


def training_records(path: Path) -> tuple[list[dict], list[tuple[int, float]]]:
    """(training records, [(tokens, val_loss)]) of one run; validation records sit at the tokens of their step."""
    records = read_metrics(path)
    train = [r for r in records if "loss" in r]
    if not train:
        keys = sorted({k for r in records for k in r})
        raise ValueError(f"{path}: no record has a 'loss' field (keys seen: {keys})")
    missing = [r for r in train if "tokens" not in r]
    if missing:
        raise ValueError(f"{path}: training records need 'tokens' (first without it: {missing[0]})")
    # validation records carry the step only; every step consumes the same tokens, so tokens = step * that
    last = train[-1]
    per_step = last["tokens"] / last["step"] if last.get("step") else None
    val = [
        (r.get("tokens", r["step"] * per_step if per_step and "step" in r else None), r["val_loss"])
        for r in records
        if "val_loss" in r
    ]
    return train, [(t, v) for t, v in val if t is not None]


def panels(runs: dict[tuple[str, str], Path]) -> list[tuple[str, str, list[str]]]:
    """[(scale, title, recipes)] for every group with at least one run, scales in sorted order."""
    out = []
    for scale in sorted({s for s, _ in runs}):
        have = {r for s, r in runs if s == scale}
        placed: set[str] = set()
        for title, names in GROUPS:
            members = [n for n in names if n in have]
            placed.update(members)
            if members:
                out.append((scale, title, members))
        baselines = sorted(r for r in have if r.startswith(BASELINE_PREFIX))
        if baselines:
            looped = [r for r in ("looped_pure_full", "looped_pure_gdn", "looped_pure_mamba2") if r in have]
            out.append((scale, "non-looped baselines", baselines + looped))
            placed.update(baselines)
        other = sorted(have - placed)
        if other:
            out.append((scale, "other", other))
    return out


def small_multiples(n: int, ncols: int = NCOLS) -> tuple[Figure, list[Axes]]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), layout="constrained", sharex=True, sharey=True,
        squeeze=False,
    )  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _split_inputs(inputs: list[Path]) -> tuple[dict[tuple[str, str], Path], dict[str, float]]:
    runs, bigram = {}, {}
    for path in inputs:
        scale, recipe = recipe_id(path)
        if path.suffix == ".json":  # a `lt2 eval bigram` record: its validation NLL per token
            record = json.loads(path.read_text())
            if "nll" not in record:
                raise ValueError(f"{path}: expected a `lt2 eval bigram` record with 'nll' (keys: {sorted(record)})")
            bigram[scale] = record["nll"]
        else:
            runs[(scale, recipe)] = path
    if not runs:
        raise ValueError("no metrics.jsonl among the inputs")
    return runs, bigram


def focus_range(data: dict, metric: str, extra: list[float]) -> tuple[float, float]:
    """y limits that show where runs end and differ: from the lowest point (or baseline) to the highest value
    a run still has after its first 10% of tokens; the initial drop from ln(vocab) runs off the top."""
    lows, highs = list(extra), []
    for train, _ in data.values():
        points = [(r["tokens"], r[metric]) for r in train if r.get(metric) is not None]
        if not points:
            continue
        last = points[-1][0]
        lows.append(min(v for _, v in points))
        highs.append(max(v for t, v in points if t >= 0.1 * last))
    low, high = min(lows), max(highs + lows)
    pad = 0.05 * max(high - low, 1e-3)
    return low - pad, high + pad


def curve_figure(inputs: list[Path], metric: str, ylabel: str, title: str, log_y: bool) -> Figure:
    runs, bigram = _split_inputs(inputs)
    data = {key: training_records(path) for key, path in runs.items()}
    layout = panels(runs)
    fig, axes = small_multiples(len(layout))
    for ax, (scale, group, recipes) in zip(axes, layout, strict=True):
        for i, recipe in enumerate(recipes):
            train, val = data[(scale, recipe)]
            points = [(r["tokens"], r[metric]) for r in train if r.get(metric) is not None]
            if not points:
                continue
            colour = f"C{i % 10}"
            ax.plot(*zip(*points), color=colour, lw=1.2, label=short_label(recipe))
            if metric == "loss" and val:
                ax.plot(*zip(*val), "o", color=colour, ms=3)
        if metric == "loss" and scale in bigram:
            ax.axhline(bigram[scale], color="0.4", ls=":", lw=1, label="bigram (val)")
        ax.set_title(f"{group} [{scale}]", fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best", frameon=False)
        if log_y:
            ax.set_yscale("log")
    if not log_y:
        axes[0].set_ylim(*focus_range(data, metric, list(bigram.values())))
    for ax in axes:
        ax.tick_params(labelbottom=True)  # shared x, but panels wrap: every panel keeps its tick labels
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel("tokens", fontsize="small")
        ax.set_ylabel(ylabel, fontsize="small")
        ax.tick_params(labelsize="x-small")
    fig.suptitle(title)
    return fig


def training_curve(inputs: list[Path]) -> Figure:
    """Training loss (lines) and validation loss (dots) against tokens, small multiples per ablation group,
    with the bigram baseline of the same data (dotted)."""
    return curve_figure(
        inputs, "loss", "loss (nats/token)", "Training loss (lines), validation loss (dots)", log_y=False
    )


def grad_norm(inputs: list[Path]) -> Figure:
    """Global gradient norm (before clipping) against tokens, small multiples per ablation group: the
    training-stability view of the paper's loss-spike discussion."""
    return curve_figure(inputs, "grad_norm", "grad norm (pre-clip)", "Gradient norm", log_y=True)


FIGURES: dict[str, Callable[[list[Path]], Figure]] = {"grad_norm": grad_norm, "training_curve": training_curve}
