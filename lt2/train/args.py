"""Arguments of a training run: data, optimisation, checkpointing and parallelism.

Paper values (the defaults here): AdamW (0.9, 0.95), weight decay 0.1, peak lr 3e-4, linear warmup then
cosine to lr_min_ratio * lr, grad clip 1.0, bf16, sequence length 4096, trainer seed 777.

Their cross-field checks live with every other check of a recipe in `lt2.recipe.validate_recipe`, which runs
whenever a recipe is loaded, so a bad value fails in seconds and names its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AC_MODES = ("none", "full", "selective")
DTYPES = ("bf16", "fp32")


@dataclass
class OptimArgs:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # matrices only; norms, biases, 1-D and per-loop gate parameters are exempt
    eps: float = 1e-8
    warmup_steps: int = 2000  # linear warmup from lr / warmup_steps to lr
    lr_min_ratio: float = 1e-6  # cosine decays to lr * lr_min_ratio
    grad_clip: float = 1.0  # max global grad norm (0: no clipping; the norm is still logged)


@dataclass
class CheckpointArgs:
    every: int = 1000  # steps between checkpoints (the last step and preemption always checkpoint)
    keep: int = 3  # newest complete checkpoints kept


@dataclass
class TrainArgs:
    steps: int = 255_000
    grad_accum: int = 1  # micro-steps per optimiser step
    seed: int = 777  # trainer RNGs (seed + rank); the model's init seed is ModelArgs.init_seed
    dtype: str = "bf16"  # bf16 | fp32 (params and reductions stay fp32 under FSDP mixed precision)
    compile: bool = True  # per-block torch.compile (skipped for mixers that cannot compile)
    activation_checkpointing: str = "none"  # none | full | selective (save matmul/attention outputs only)
    fsdp: bool = True  # fully_shard (any world size, for bf16 params / fp32 reduce); False: one rank, autocast
    # A looped block runs loop_count times per forward: resharding after each call would all-gather its
    # weights loop_count times in forward and again in backward. False keeps them gathered until backward.
    reshard_after_forward: bool = False
    loss_chunk: int = 4096  # tokens per chunk of the fused cross-entropy (never all fp32 logits); 0: no chunks
    log_every: int = 10
    val_every: int = 1000  # steps between validation-loss evaluations (0: never)
    val_tokens: int = 1_000_000  # tokens of the held-out file scored per validation
    optim: OptimArgs = field(default_factory=OptimArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
