"""How long a recipe trains on a GPU cluster, from its analytic FLOPs and the throughput measured on an H100.

    hours = train FLOPs/token (at the recipe's seq_len) * tokens / (achieved FLOP/s per GPU * GPUs) / 3600

`tokens` = steps * batch_size * seq_len * grad_accum * GPUs (the recipe's whole budget). The achieved
FLOP/s per GPU come from `lt2 bench train` at 600M, bf16, torch.compile, 2 x 4096 tokens per GPU, on one
H100 (the project's recorded measurement): the Looped Transformer ran at 21.7% MFU, Looped GDN at 5.8%
(its chunked kernels leave many small elementwise kernels unfused). A recipe whose layers are all
attention (full, window) takes the first rate; any linear or sparse mixer, the second, so hybrids are
estimated on the slow side. The slurm profile's time limit and retries for `train` are set from these
numbers (profiles/slurm/config.yaml; tests/train/test_runtime.py checks that they cover every recipe).

    >>> estimate_hours(load_recipe("config/recipes/1B/looped_pure_gdn.yaml"), gpus=8).hours  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

from lt2.recipe import Recipe

H100_BF16_PEAK = 989.4e12  # dense bf16 FLOP/s of an H100 SXM (lt2.train.metrics.PEAK_FLOPS)
# Model FLOPs utilisation measured by `lt2 bench train` (600M, bf16, compile, one H100).
MEASURED_MFU = {"attention": 0.217, "other": 0.058}
ATTENTION_MIXERS = {"full", "window"}


@dataclass
class RuntimeEstimate:
    recipe: str
    gpus: int
    tokens: float  # the recipe's training tokens
    train_flops_per_token: float
    mfu: float  # the measured utilisation the estimate assumes
    hours: float


def estimate_hours(recipe: Recipe, gpus: int) -> RuntimeEstimate:
    """Wall-clock hours of the recipe's whole training on `gpus` H100s at the measured utilisation."""
    from lt2.model.costs import model_info

    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    info = model_info(recipe.model, recipe.data.seq_len)
    mixers = {m.split("=")[0] for row in info.mixer_map for m in row}
    random_layout = any(m.startswith("random(") for m in mixers)  # random full/window placement: attention
    kind = "attention" if random_layout or mixers <= ATTENTION_MIXERS else "other"
    mfu = MEASURED_MFU[kind]
    data, train = recipe.data, recipe.train
    tokens = float(train.steps * data.batch_size * data.seq_len * train.grad_accum * gpus)
    seconds = info.train_flops_per_token * tokens / (mfu * H100_BF16_PEAK * gpus)
    return RuntimeEstimate(recipe.name, gpus, tokens, info.train_flops_per_token, mfu, seconds / 3600)
