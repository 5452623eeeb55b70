"""What a table or figure is: the function that builds it, the records it reads, and its caption.

`lt2.report.tables.TABLES` and `lt2.report.figures.FIGURES` map a name to an `Entry`. The workflow asks the
entry for its inputs (`Entry.record_paths`), so one wildcard rule in workflow/rules/report.smk builds any
of them. Records come from one or several sources (a tuple: their paths concatenated), each read in one of
two ways:

- per recipe: a pattern under `results/<name>/` with `{scale}` and `{recipe}`, expanded over the run's
  recipes, e.g. `eval/ppl/{scale}/{recipe}.json`;
- from the configuration: a function of the workflow config returning paths under `results/<name>/`, for
  benchmarks that measure a configured list of recipes in their own layout (`bench_throughput_records`).

A figure that prints the paper's numbers next to ours names their table in `paper`; the workflow then adds
`config/paper/<paper>.csv` to its inputs (tables always read their own).

The paragraph-long caption of the HTML report is `workflow/report/<name>.rst`; `caption` here is the one
line a LaTeX table carries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Source = str | Callable[[Mapping[str, Any]], list[str]]
Records = Source | tuple[Source, ...]


def recipe_id(path: str | Path) -> tuple[str, str]:
    """(scale, recipe) of a per-recipe record: `.../<scale>/<recipe>.json` or `.../<scale>/<recipe>/<file>`."""
    path = Path(path)
    if path.suffix == ".json" and path.name not in {"config.json"}:
        return path.parent.name, path.stem
    return path.parent.parent.name, path.parent.name


@dataclass(frozen=True)
class Entry:
    """One table or figure.

    build:   records (paths) -> a DataFrame (tables) or a matplotlib Figure (figures)
    records: a source or a tuple of sources (their paths concatenated, in order); a source is a per-recipe
             pattern (str with {scale}, {recipe}: every selected recipe's record) or config -> paths;
             all under results/<name>/
    caption: one line (the LaTeX caption of a table)
    select:  recipe names the entry reads (an ablation's rows); None: every recipe of the run
    paper:   the table whose paper numbers (config/paper/<paper>.csv) `build` also reads, after the records,
             and prints beside ours itself (a table's own name: its build replaces with_paper's
             same-scale matching); None: none (tables: with_paper adds them)
    """

    build: Callable[[list[Path]], Any]
    records: Records
    caption: str
    select: tuple[str, ...] | None = None
    paper: str | None = None

    def record_paths(self, config: Mapping[str, Any], recipes: list[str]) -> list[str]:
        """The records this entry reads for a run of `recipes` (`<scale>/<recipe>` ids) under `config`."""
        sources = self.records if isinstance(self.records, tuple) else (self.records,)
        ids = [rid.split("/") for rid in recipes if self.select is None or rid.split("/")[1] in self.select]
        paths: list[str] = []
        for source in sources:
            if isinstance(source, str):
                paths += [source.format(scale=scale, recipe=recipe) for scale, recipe in ids]
            else:
                paths += source(config)
        return paths


# ------------------------------------------------------------------ config-derived records
def bench_throughput_records(config: Mapping[str, Any]) -> list[str]:
    """The decode benchmark's one CSV (`lt2 bench throughput`, all configured recipes in one run)."""
    bench = config.get("bench", {})
    if "throughput" not in bench:
        raise ValueError("the decode table/figure need config bench.throughput (a GPU benchmark run)")
    return [f"bench/{bench['throughput']['scale']}/throughput.csv"]


def bench_train_records(config: Mapping[str, Any]) -> list[str]:
    """One `lt2 bench train` record per recipe of config bench.train."""
    bench = config.get("bench", {})
    if "train" not in bench:
        raise ValueError("the train_throughput table needs config bench.train (a GPU benchmark run)")
    train = bench["train"]
    return [f"bench/train/{train['scale']}/{recipe}.json" for recipe in train["recipes"]]


def longctx_records(config: Mapping[str, Any]) -> list[str]:
    """One `lt2 eval longctx` record per recipe of config eval.longctx.recipes (the Table 5 rows)."""
    longctx = config.get("eval", {}).get("longctx")
    if not longctx or not longctx.get("recipes"):
        raise ValueError("the long_context table/figure need config eval.longctx.recipes (<scale>/<recipe> ids)")
    return [f"eval/longctx/{rid}.json" for rid in longctx["recipes"]]


DISTILL_KINDS = ("zeroshot", "eval", "longctx", "bench")  # record folders under distill/<scale>/


def distill_records(config: Mapping[str, Any]) -> list[str]:
    """Quality (`lt2 eval zeroshot`, `lt2 eval ppl`, `lt2 eval longctx`) and decode cost (`lt2 distill bench`)
    of the distillation's teacher and student, at the scale its YAML (config distill.config) names."""
    from lt2.distill.args import load_distill

    if not config.get("distill"):
        raise ValueError("the distill table needs config `distill` (a distillation run)")
    scale = load_distill(config["distill"]["config"]).scale
    return [f"distill/{scale}/{kind}/{role}.json" for kind in DISTILL_KINDS for role in ("teacher", "student")]


def synthetic_records(config: Mapping[str, Any]) -> list[str]:
    """One `lt2 synth run` record per configured arm and loop count (config synthetic.arms x loop_counts)."""
    synthetic = config.get("synthetic")
    if not synthetic or not synthetic.get("arms") or not synthetic.get("loop_counts"):
        raise ValueError("the synthetic table/figure need config synthetic.arms and synthetic.loop_counts")
    return [
        f"synthetic/{arm}/T{loop_count}.json" for arm in synthetic["arms"] for loop_count in synthetic["loop_counts"]
    ]


def bigram_records(config: Mapping[str, Any]) -> list[str]:
    """The bigram baseline of every scale the run trains (`lt2 eval bigram`, one record per scale)."""
    recipes = config.get("recipes", {})
    scales = sorted({rid.split("/")[0] for rid in recipes.get("only") or []}) or list(recipes.get("scales", []))
    return [f"eval/bigram/{scale}/bigram_baseline.json" for scale in scales]


def mixer_cost_recipes(config: Mapping[str, Any]) -> list[str]:
    """The pure-mixer recipe files of report.mixer_costs_scale (analytic: the figure reads recipes, not results;
    the workflow takes paths under the recipes folder as they are)."""
    root = Path(config["recipes"]["dir"], config["report"]["mixer_costs_scale"])
    return sorted(str(p) for p in root.glob("looped_pure_*.yaml") if "gated" not in p.stem)
