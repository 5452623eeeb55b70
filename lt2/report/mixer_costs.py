"""The paper's Figure 2 from the analytic costs the model owns: sequence-mixing FLOPs per token and decode-cache
memory of one sequence against sequence length, one line per recipe (one per mixer when the inputs are the
pure recipes of a scale).

Nothing is measured: every point is each mixer's `mixing_flops(L, spec)` summed over (loop, layer) and the
decode state allocated on the meta device (`lt2.model.costs`), with `max_seqlen` raised to the longest L
(RoPE and windows do not depend on it). The projections' FLOPs are the same at every L and left out, as in
the paper's figure. Full attention grows linearly per token in FLOPs and in cache; windowed, sparse-top-k
and linear mixers flatten.

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
    """(sequence-mixing forward FLOPs/token over every (loop, layer), decode cache bytes of one sequence) at
    each context, from the mixers' own analytics on a meta-device model (built once)."""
    from lt2.model.costs import cache_bytes, meta_model
    from lt2.recipe import load_recipe

    args = load_recipe(recipe_path).model
    model = meta_model(dataclasses.replace(args, max_seqlen=max(max(contexts), args.max_seqlen)))
    specs = model.layout.specs
    flops = [
        float(sum(block.mixer.mixing_flops(ctx, specs[loop][layer]) for loop in range(args.loop_count)
                  for layer, block in enumerate(model.layers)))
        for ctx in contexts
    ]  # fmt: skip
    return flops, [float(cache_bytes(model, ctx)) for ctx in contexts]


def mixer_costs(inputs: list[Path], contexts: list[int] | None = None) -> Figure:
    """Sequence-mixing FLOPs per token and decode-cache memory per sequence vs sequence length (paper Fig. 2),
    analytic, one line per recipe."""
    contexts = contexts or CONTEXTS
    fig, (ax_flops, ax_cache) = plt.subplots(1, 2, figsize=(10.5, 4.0), layout="constrained")
    scales = set()
    for i, path in enumerate(sorted(inputs)):
        scales.add(path.parent.name)
        flops, cache = cost_curves(path, contexts)
        style = {"color": f"C{i % 10}", "ls": "-" if i < 10 else "--", "marker": "o", "ms": 3}
        flops = [max(f, 1.0) for f in flops]  # log axis
        ax_flops.plot(contexts, [f / 1e9 for f in flops], label=short_label(path.stem), **style)
        ax_cache.plot(contexts, [c / 2**30 for c in cache], **style)
    labels = ("sequence-mixing GFLOPs / token (forward)", "decode cache GiB / sequence (bf16 KV)")
    for ax, ylabel in zip((ax_flops, ax_cache), labels, strict=True):
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
