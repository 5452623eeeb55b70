"""Every tiny recipe is the model its name says and differs from every other (what `lt2 model-info --json`
reports): pairwise different mixer maps (or, where two maps agree, a model setting the map does not show,
such as the output gate), and every Full:GDN ratio realised with at least one full layer, ordered as named.

Run: pytest tests/model/test_tiny_recipes.py
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from lt2.config import to_dict
from lt2.model.costs import model_info
from lt2.recipe import load_recipe

TINY = Path(__file__).resolve().parents[2] / "config" / "recipes" / "tiny"
ROWS = sorted(p.stem for p in TINY.glob("*.yaml") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def infos() -> dict[str, dict]:
    """The `lt2 model-info --json` record of every tiny recipe, with its resolved model settings."""
    out = {}
    for row in ROWS:
        recipe = load_recipe(TINY / f"{row}.yaml")
        out[row] = {
            "info": json.loads(model_info(recipe.model, recipe.data.seq_len).to_json()),
            "model": to_dict(recipe.model),
        }
    return out


def full_layers(info: dict) -> tuple[int, int]:
    """(full-attention layers, GDN layers) of the first loop's row of the mixer map."""
    row = info["mixer_map"][0]
    return row.count("full"), row.count("gdn")


def test_mixer_maps_are_pairwise_different(infos):
    for a, b in itertools.combinations(ROWS, 2):
        if infos[a]["info"]["mixer_map"] != infos[b]["info"]["mixer_map"]:
            continue
        differ = sorted(k for k, v in infos[a]["model"].items() if k != "pattern" and infos[b]["model"][k] != v)
        assert differ, f"{a} and {b} are the same model (mixer map {infos[a]['info']['mixer_map']})"
        assert infos[a]["info"] != infos[b]["info"], f"{a} and {b}: model-info cannot tell them apart"


def test_every_ratio_is_realised_and_ordered(infos):
    """1:1 > 1:4 > 1:6 > 1:12 >= 1 full layers (the 1:4 row is the flagship interleave), 1:0 and 0:1 pure."""
    named = {1: "looped_hybrid_ratio_1to1", 4: "looped_hybrid_gdn_4to1", 6: "looped_hybrid_ratio_1to6",
             12: "looped_hybrid_ratio_1to12"}  # fmt: skip
    counts = {ratio: full_layers(infos[row]["info"]) for ratio, row in named.items()}
    fulls = [counts[r][0] for r in sorted(counts)]
    assert fulls == sorted(fulls, reverse=True) and len(set(fulls)) == len(fulls), counts
    assert fulls[-1] >= 1, f"1:12 has no full layer: {counts}"
    for ratio, (n_full, n_gdn) in counts.items():
        # realised GDN per full layer is the nominal ratio up to the rounding of a finite stack
        assert ratio / 2 <= n_gdn / n_full <= 2 * ratio, f"1:{ratio} realised as {n_full}:{n_gdn}"
    assert full_layers(infos["looped_pure_full"]["info"])[1] == 0
    assert full_layers(infos["looped_pure_gdn"]["info"])[0] == 0


def test_placements_hold_as_many_full_layers_as_the_interleave(infos):
    """Table 3b compares where the full layers sit, not how many: bookend/front/back match the 1:4 interleave."""
    reference = full_layers(infos["looped_hybrid_gdn_4to1"]["info"])
    rows = {}
    for name in ("looped_hybrid_bookend", "looped_hybrid_front", "looped_hybrid_back"):
        row = infos[name]["info"]["mixer_map"][0]
        rows[name] = [i for i, m in enumerate(row) if m == "full"]
        assert full_layers(infos[name]["info"]) == reference, (name, row)
    n = len(infos["looped_hybrid_front"]["info"]["mixer_map"][0])
    assert rows["looped_hybrid_front"] == list(range(len(rows["looped_hybrid_front"])))
    assert rows["looped_hybrid_back"] == list(range(n - len(rows["looped_hybrid_back"]), n))
    assert rows["looped_hybrid_bookend"][0] == 0 and rows["looped_hybrid_bookend"][-1] == n - 1


def test_loop_level_schedules_change_the_mixer_from_loop_to_loop(infos):
    for name in ("looped_hybrid_128_256_512_full", "looped_hybrid_full_512_256_128"):
        loops = infos[name]["info"]["mixer_map"]
        assert len({tuple(row) for row in loops}) == len(loops), (name, loops)
    up = [re.sub(r"\D", "", row[0]) or "full" for row in infos["looped_hybrid_128_256_512_full"]["info"]["mixer_map"]]
    down = [re.sub(r"\D", "", r[0]) or "full" for r in infos["looped_hybrid_full_512_256_128"]["info"]["mixer_map"]]
    assert up == down[::-1] and up[-1] == "full"
