"""What a table or figure is: the function that builds it, the records it reads, and its caption.

`lt2.report.tables.TABLES` and `lt2.report.figures.FIGURES` map a name to an `Entry`. The workflow asks the
entry for its inputs (`Entry.record_paths`), so one wildcard rule in workflow/rules/report.smk builds any
of them. Records are read in one of two ways:

- per recipe: a pattern under `results/<name>/` with `{scale}` and `{recipe}`, expanded over the run's
  recipes, e.g. `eval/ppl/{scale}/{recipe}.json`;
- from the configuration: a function of the workflow config returning paths under `results/<name>/`, for
  benchmarks that measure a configured list of recipes in their own layout (`bench_throughput_records`).

The paragraph-long caption of the HTML report is `workflow/report/<name>.rst`; `caption` here is the one
line a LaTeX table carries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Records = str | Callable[[Mapping[str, Any]], list[str]]


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
    records: per-recipe pattern (str with {scale}, {recipe}) or config -> paths; both under results/<name>/
    caption: one line (the LaTeX caption of a table)
    """

    build: Callable[[list[Path]], Any]
    records: Records | tuple[Records, ...]  # several sources: their paths concatenated
    caption: str

    def record_paths(self, config: Mapping[str, Any], recipes: list[str]) -> list[str]:
        """The records this entry reads for a run of `recipes` (`<scale>/<recipe>` ids) under `config`."""
        sources = self.records if isinstance(self.records, tuple) else (self.records,)
        paths: list[str] = []
        for source in sources:
            if isinstance(source, str):
                paths += [source.format(scale=rid.split("/")[0], recipe=rid.split("/")[1]) for rid in recipes]
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
