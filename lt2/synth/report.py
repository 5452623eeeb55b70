"""The synthetic study's table and figure (registered in lt2.report.tables.TABLES / lt2.report.figures.FIGURES).

Inputs: the `lt2 synth run` records (one JSON per arm and loop count); both also take the paper's numbers
(config/paper/synthetic.csv, rows `paper/<arm>`: the paper budget, columns `n_max T=<t>` and `n_max best T`),
which their registry entries name (`Entry.paper`), and print them beside ours.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lt2.synth.arms import ARMS
from lt2.synth.curriculum import CHANCE, MAJORITY, SHORTCUT


def read_records(inputs: list[Path]) -> list[dict]:
    records = []
    for path in inputs:
        record = json.loads(Path(path).read_text())
        missing = {"arm", "loop_count", "n_max", "budget"} - set(record)
        if missing:
            raise ValueError(f"{path} is not an `lt2 synth run` record (missing {', '.join(sorted(missing))})")
        records.append(record)
    return records


def _last_stage(record: dict) -> tuple[float, float]:
    """(n, accuracy) of the last stage a run attempted (its last evaluation there); NaNs if none ran."""
    stages = record.get("stages") or []
    if not stages:
        return math.nan, math.nan
    return float(stages[-1]["n"]), float(stages[-1]["accuracy"])


def synthetic_table(inputs: list[Path]) -> pd.DataFrame:
    """Largest curriculum stage n_max (n = m) passed at eval accuracy >= 0.90, per arm and loop count T.

    0 means no stage passed. `n_max best T` is the largest over the loop counts run. Per T, `last n T=<t>` is
    the last stage attempted and `acc T=<t>` the accuracy of its last evaluation, so a run that passes no
    stage still says how far it got, against the `majority` (~0.69), `shortcut` (~0.6) and `chance` levels.
    A .csv input is the paper's numbers (config/paper/synthetic.csv, rows `paper/<arm>`, the paper budget):
    its Figure 9 outcomes stand beside ours as `paper n_max T=<t>` / `paper n_max best T`, whatever budget
    ours ran (columns without any paper number are left out).
    """
    records = read_records([p for p in inputs if Path(p).suffix != ".csv"])
    paper = _paper_values([p for p in inputs if Path(p).suffix == ".csv"])
    rows: dict[tuple[str, str], dict] = {}
    for r in records:
        row = rows.setdefault((r["budget"], r["arm"]), {"recipe": r["arm"], "scale": r["budget"],
                                                        "arm": r["label"], "hybrid": r["hybrid"]})  # fmt: skip
        t = r["loop_count"]
        row[f"n_max T={t}"] = r["n_max"]
        row[f"last n T={t}"], row[f"acc T={t}"] = _last_stage(r)
        row["majority"], row["shortcut"], row["chance"] = (r.get("majority", MAJORITY), r.get("shortcut", SHORTCUT),
                                                           r.get("chance", CHANCE))  # fmt: skip
    df = pd.DataFrame(list(rows.values()))
    loops = sorted({r["loop_count"] for r in records})
    per_t = [f"n_max T={t}" for t in loops]
    df["n_max best T"] = df[per_t].max(axis=1)
    paper_cols = [f"paper {c}" for c in [*per_t, "n_max best T"]]
    for column in paper_cols:
        df[column] = [paper.get((arm, column.removeprefix("paper ")), math.nan) for arm in df["recipe"]]
    paper_cols = [c for c in paper_cols if df[c].notna().any()]
    progress = [c for t in loops for c in (f"last n T={t}", f"acc T={t}")]
    return df[["recipe", "scale", "arm", "hybrid", *per_t, "n_max best T", *paper_cols, *progress, "majority",
               "shortcut", "chance"]]  # fmt: skip


def _paper_values(paper_csvs: list[Path]) -> dict[tuple[str, str], float]:
    values = {}
    for path in paper_csvs:
        df = pd.read_csv(path)
        for row in df[df["table"] == "synthetic"].itertuples(index=False):
            values[(row.row.split("/")[-1], row.column)] = float(row.value)
    return values


def synthetic_heatmap(inputs: list[Path]):
    """Figure 9: n_max per arm (rows; pure mixers above the line, hybrids below) and loop count T (columns).

    Inputs: `lt2 synth run` records, and optionally config/paper/synthetic.csv (a .csv input) whose values
    are printed under ours as "paper N".
    """
    import matplotlib.pyplot as plt
    import numpy as np

    records = read_records([p for p in inputs if Path(p).suffix == ".json"])
    paper = _paper_values([p for p in inputs if Path(p).suffix == ".csv"])
    ran = {r["arm"] for r in records}
    arms = [a for a in ARMS if a in ran and not ARMS[a].hybrid] + [a for a in ARMS if a in ran and ARMS[a].hybrid]
    loops = sorted({r["loop_count"] for r in records})
    n_max = np.full((len(arms), len(loops)), np.nan)
    for r in records:
        n_max[arms.index(r["arm"]), loops.index(r["loop_count"])] = r["n_max"]
    stages = sorted({n for r in records for n in r["stages_run"]})
    budgets = sorted({r["budget"] for r in records})

    fig, ax = plt.subplots(figsize=(max(6.0, 3.2 + 1.1 * len(loops)), 1.6 + 0.55 * len(arms)), layout="constrained")
    low, high = math.log2(stages[0]) - 1, math.log2(max(stages))  # colour scale: "none" one step below stage 1
    colour = np.log2(np.where(n_max > 0, n_max, 2.0**low))
    image = ax.imshow(colour, cmap="viridis", vmin=low, vmax=high, aspect="auto")
    for i, arm in enumerate(arms):
        for j, loop in enumerate(loops):
            ours = "-" if np.isnan(n_max[i, j]) else ("none" if n_max[i, j] == 0 else str(int(n_max[i, j])))
            theirs = paper.get((arm, f"n_max T={loop}"))
            text = ours if theirs is None else f"{ours}\npaper {int(theirs)}"
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="white" if not colour[i, j] > (low + high) / 2 else "black")  # fmt: skip
    pure = sum(not ARMS[a].hybrid for a in arms)
    if 0 < pure < len(arms):
        ax.axhline(pure - 0.5, color="red", linewidth=2)
    ax.set_xticks(range(len(loops)), [f"T={t}" for t in loops])
    ax.set_yticks(range(len(arms)), [ARMS[a].label for a in arms])
    ax.set_xlabel("loop count")
    bar = fig.colorbar(image, ax=ax, ticks=[math.log2(stages[0]) - 1, *map(math.log2, stages)])
    bar.ax.set_yticklabels(["none", *map(str, stages)])
    bar.set_label("n_max (n = m)")
    ax.set_title(
        f"state tracking + recall ({', '.join(budgets)} budget)\npass: accuracy >= 0.90\n"
        f"chance {CHANCE}, shortcut (initial address) ~{SHORTCUT}, majority of pointed-to bits ~{MAJORITY}",
        fontsize="small",
    )
    return fig
