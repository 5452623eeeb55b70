"""Training-time estimates (lt2.train.runtime) and the slurm profile that is set from them: time per job x
attempts covers the slowest paper row of each scale at the measured H100 throughput.

Run: pytest tests/train/test_runtime.py
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from lt2.recipe import load_recipe
from lt2.train.runtime import H100_BF16_PEAK, MEASURED_MFU, estimate_hours

REPO = Path(__file__).resolve().parents[2]
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())


def profile_minutes(scale: str) -> float:
    expr = PROFILE["set-resources"]["train"]["runtime"]
    return float(eval(str(expr), {"wildcards": type("W", (), {"scale": scale})}))  # as Snakemake evaluates it


def profile_gpus(scale: str) -> int:
    return int(eval(str(PROFILE["set-resources"]["train"]["gpu"]), {"wildcards": type("W", (), {"scale": scale})}))


def test_estimate_is_flops_over_measured_throughput():
    recipe = load_recipe(REPO / "config" / "recipes" / "tiny" / "looped_pure_full.yaml")
    est = estimate_hours(recipe, gpus=2)
    assert est.mfu == MEASURED_MFU["attention"]
    tokens = recipe.train.steps * recipe.data.batch_size * recipe.data.seq_len * 2
    assert est.tokens == tokens
    assert est.hours == pytest.approx(est.train_flops_per_token * tokens / (est.mfu * H100_BF16_PEAK * 2) / 3600)
    gdn = estimate_hours(load_recipe(REPO / "config" / "recipes" / "tiny" / "looped_hybrid_gdn_4to1.yaml"), 2)
    assert gdn.mfu == MEASURED_MFU["other"]  # a hybrid with a linear mixer is estimated at the GDN rate
    with pytest.raises(ValueError, match="gpus"):
        estimate_hours(recipe, gpus=0)


@pytest.mark.parametrize("scale", ["600M", "1B"])
def test_slurm_profile_covers_the_slowest_recipe(scale):
    gpus = profile_gpus(scale)
    # the slowest rows: the GDN family (lowest measured MFU) and DSA (most FLOPs at 600M)
    hours = max(
        estimate_hours(load_recipe(REPO / "config" / "recipes" / scale / f"{row}.yaml"), gpus).hours
        for row in ("looped_pure_full", "looped_pure_gdn", "looped_pure_dsa", "looped_hybrid_gdn_4to1")
    )
    per_job = profile_minutes(scale) / 60
    jobs = PROFILE["retries"] + 1
    assert per_job * jobs >= hours, (
        f"{scale}: {jobs} jobs of {per_job:.0f} h < {hours:.0f} h estimated; raise retries to "
        f"{math.ceil(hours / per_job) - 1} or the runtime"
    )
