"""The paper's Figure 2 from the analytic costs the model owns: forward FLOPs per token and decode-cache memory
of one sequence against sequence length, one line per recipe (one per mixer when the inputs are the pure
recipes of a scale).

Nothing is measured: every point is `lt2.model.costs.model_info(args, L)` with the recipe's model, its
`max_seqlen` raised to the longest L (RoPE and windows do not depend on it). Quadratic mixers grow
linearly per token in FLOPs and linearly in cache; windowed, sparse-top-k and linear mixers flatten.

Inputs: recipe YAML files (`config/recipes/<scale>/<recipe>.yaml`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from lt2.report.curves import short_label

CONTEXTS = [2**k for k in range(10, 18)]  # 1k .. 128k tokens


def cost_curves(recipe_path: Path, contexts: list[int]) -> tuple[list[float], list[float]]:
    """(forward FLOPs/token, decode cache bytes of one sequence) at each context, from the model's analytics."""
    from lt2.config import load_recipe
    from lt2.model.costs import model_info

    args = load_recipe(recipe_path).model
    args = dataclasses.replace(args, max_seqlen=max(max(contexts), args.max_seqlen))
    flops, cache = [], []
    for ctx in contexts:
        info = model_info(args, ctx)
        flops.append(info.forward_flops_per_token)
        cache.append(float(info.cache_bytes(ctx)))
    return flops, cache


def mixer_costs(inputs: list[Path], contexts: list[int] | None = None) -> Figure:
    """Forward FLOPs per token and decode-cache memory per sequence vs sequence length (paper Fig. 2),
    analytic, one line per recipe."""
    contexts = contexts or CONTEXTS
    fig, (ax_flops, ax_cache) = plt.subplots(1, 2, figsize=(10.5, 4.0), layout="constrained")
    scales = set()
    for i, path in enumerate(sorted(inputs)):
        scales.add(path.parent.name)
        flops, cache = cost_curves(path, contexts)
        style = {"color": f"C{i % 10}", "ls": "-" if i < 10 else "--", "marker": "o", "ms": 3}
        ax_flops.plot(contexts, [f / 1e9 for f in flops], label=short_label(path.stem), **style)
        ax_cache.plot(contexts, [c / 2**30 for c in cache], **style)
    for ax, ylabel in ((ax_flops, "forward GFLOPs / token"), (ax_cache, "decode cache GiB / sequence (bf16 KV)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    ax_flops.set_title("compute")
    ax_cache.set_title("memory")
    ax_flops.legend(fontsize="small", ncols=2)
    fig.suptitle(f"Cost of each mixer vs sequence length (analytic, {', '.join(sorted(scales))} recipes)")
    return fig
