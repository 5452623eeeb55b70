"""Figures render from records shaped like the workflow's: the training-curve and grad-norm small multiples
at paper scale (60 synthetic runs over two scales, one panel per ablation group and scale), the analytic
mixer-cost figure (paper Fig. 2), and the throughput figure with its prefill row.

Run: pytest tests/report/test_figures.py
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from lt2.report.curves import GROUPS, panels
from lt2.report.figures import build_figure, save_figure
from lt2.report.tables import recipe_id

REPO = Path(__file__).resolve().parents[2]


def synthetic_runs(root: Path, scales=("600M", "1B")) -> list[Path]:
    """One metrics.jsonl per paper recipe and scale (60), with a decaying loss, a grad norm and validation."""
    paths = []
    for scale in scales:
        for recipe in sorted(p.stem for p in (REPO / "config" / "recipes" / scale).glob("[!_]*.yaml")):
            rng = random.Random(f"{scale}/{recipe}")
            floor = rng.uniform(2.2, 2.8)
            lines = []
            for step in range(100, 20001, 500):
                loss = floor + 8 * math.exp(-step / 2000) + rng.gauss(0, 0.02)
                lines.append({"step": step, "tokens": step * 393216, "loss": loss, "lr": 3e-4,
                              "grad_norm": 0.3 + 2 * math.exp(-step / 5000)})  # fmt: skip
                if step % 5000 == 0:
                    lines.append({"step": step, "val_loss": loss + 0.05, "val_tokens": 4_000_000})
            path = root / "train" / scale / recipe / "metrics.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in lines))
            paths.append(path)
    return paths


def bigram_record(root: Path, scale: str, nll: float) -> Path:
    path = root / "eval" / "bigram" / scale / "bigram_baseline.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"nll": nll, "ppl": math.exp(nll)}))
    return path


def test_every_paper_recipe_lands_in_a_panel_with_few_lines(tmp_path):
    runs = {recipe_id(p): p for p in synthetic_runs(tmp_path)}
    assert len(runs) == 60  # 23 looped recipes and 3 non-looped baselines per scale, 8 Table 5 rows at 1B
    layout = panels(runs)
    placed = {(scale, r) for scale, _, recipes in layout for r in recipes}
    assert placed == set(runs)  # nothing dropped
    assert all(title != "other" for _, title, _ in layout)  # every paper row belongs to an ablation group
    assert max(len(recipes) for _, _, recipes in layout) <= 10  # distinct colours in every panel
    assert len(layout) == 2 * len(GROUPS) + 1  # + a baselines panel per scale - the Table 5 group at 600M


@pytest.mark.parametrize("name", ["training_curve", "grad_norm"])
def test_curve_figures_render_at_paper_scale(tmp_path, name):
    inputs = [*synthetic_runs(tmp_path), bigram_record(tmp_path, "1B", 3.1)]
    fig = build_figure(name, inputs)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 * len(GROUPS) + 1  # as test_every_paper_recipe_lands_in_a_panel_with_few_lines
    titles = {ax.get_title() for ax in visible}
    assert "full : GDN ratio (Table 3a) [1B]" in titles and "full : GDN ratio (Table 3a) [600M]" in titles
    if name == "training_curve":  # the bigram line sits in the 1B panels only
        ratio_1b = next(ax for ax in visible if ax.get_title() == "full : GDN ratio (Table 3a) [1B]")
        assert "bigram (val)" in [t.get_text() for t in ratio_1b.get_legend().get_texts()]
    save_figure(fig, tmp_path / f"{name}.png")
    assert (tmp_path / f"{name}.png").stat().st_size > 20_000


def test_unknown_recipes_go_to_an_other_panel(tmp_path):
    path = tmp_path / "train" / "tiny" / "my_new_row" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"step": 1, "tokens": 10, "loss": 5.0, "grad_norm": 1.0}) + "\n")
    fig = build_figure("training_curve", [path])
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["other [tiny]"]


def test_mixer_cost_figure_from_the_recipes(tmp_path, monkeypatch):
    from lt2.report import mixer_costs

    monkeypatch.setattr(mixer_costs, "CONTEXTS", [1024, 4096])  # two points per line keep the test fast
    recipes = [REPO / "config" / "recipes" / "tiny" / f"looped_pure_{m}.yaml" for m in ("full", "window", "gdn")]
    flops, cache = mixer_costs.cost_curves(recipes[0], [1024, 4096])
    assert flops[1] > flops[0] and cache[1] == pytest.approx(4 * cache[0], rel=0.05)  # full attention grows
    gdn_flops, gdn_cache = mixer_costs.cost_curves(recipes[2], [1024, 4096])
    assert gdn_flops[1] == pytest.approx(gdn_flops[0]) and gdn_cache[1] == gdn_cache[0]  # linear: flat
    fig = build_figure("mixer_costs", recipes)
    assert len(fig.axes[0].get_lines()) == 3
    save_figure(fig, tmp_path / "mixer_costs.png")


def test_throughput_figure_has_a_prefill_row(tmp_path):
    csv = REPO / "results" / "paper" / "bench" / "1B" / "throughput.csv"
    fig = build_figure("decode_throughput", [csv])
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("decode") for t in titles) and any(t.startswith("prefill") for t in titles)


def test_throughput_figure_draws_the_papers_decode_points_in_their_models_colour():
    csv = REPO / "results" / "paper" / "bench" / "1B" / "throughput.csv"
    fig = build_figure("decode_throughput", [csv, REPO / "config" / "paper" / "decode.csv"])
    (panel,) = [ax for ax in fig.axes if ax.get_title() == "decode, batch 8"]
    stars = {(tuple(s.get_xdata()), tuple(s.get_ydata())): s.get_color() for s in panel.get_lines()
             if s.get_marker() == "*"}  # fmt: skip
    assert set(stars) == {((8192,), (22.0,)), ((8192,), (125.0,))}
    colour = {s.get_label(): s.get_color() for s in panel.get_lines() if s.get_marker() == "o"}
    assert stars[(8192,), (22.0,)] == colour["looped_pure_full"]
    assert stars[(8192,), (125.0,)] == colour["looped_hybrid_gdn_dsa"]
    elsewhere = [s for ax in fig.axes if ax is not panel for s in ax.get_lines() if s.get_marker() == "*"]
    assert [len(s.get_xdata()) for s in elsewhere] == [0]  # only the legend's entry (batch 1 panel)
