"""Arguments of a training run: data, optimisation, checkpointing and parallelism.

Paper values (the defaults here): AdamW (0.9, 0.95), weight decay 0.1, peak lr 3e-4, linear warmup then
cosine to lr_min_ratio * lr, grad clip 1.0, bf16, sequence length 4096, trainer seed 777.

Cross-field checks live in one place, `validate_run`, which `lt2 train` and `lt2 bench train` call before
anything is built, so a bad value fails in seconds and names its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AC_MODES = ("none", "full", "selective")
DTYPES = ("bf16", "fp32")


@dataclass
class DataArgs:
    train_dir: str = ""  # folder of shuffled chunk files `{dataset}.chunk.{i:02d}.jsonl`
    val_file: str = ""  # held-out `{dataset}.val.jsonl`; empty disables validation
    tokenizer: str = ""  # tokenizer directory (tokenizer.json), see lt2.data.tokenizer
    seq_len: int = 4096  # tokens per training sequence (packed, BOS/EOS between documents)
    batch_size: int = 8  # sequences per rank per micro-step
    doc_mask: bool = False  # attention/state never crosses a packed document boundary
    # Packed streams the chunk files are cut into (each chunk into streams / n_chunks line-aligned byte
    # ranges); stream s belongs to rank s % world_size. 0: the smallest multiple of the chunk count that
    # the world size divides. Fixed at the first start and kept in the checkpoint, so that a run can
    # resume on any number of ranks up to this count.
    streams: int = 0
    prefetch: int = 2  # batches packed ahead in a background thread (0: in the training thread)


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


def validate_run(data: DataArgs, train: TrainArgs, needs_data: bool = True) -> None:
    """Cross-field checks of a run; raises ValueError naming the key and the valid choices."""
    if train.activation_checkpointing not in AC_MODES:
        raise ValueError(
            f"train.activation_checkpointing={train.activation_checkpointing!r}; valid: {', '.join(AC_MODES)}"
        )
    if train.dtype not in DTYPES:
        raise ValueError(f"train.dtype={train.dtype!r}; valid: {', '.join(DTYPES)}")
    minimum = {  # key -> (value, smallest valid value)
        "train.steps": (train.steps, 1),
        "train.grad_accum": (train.grad_accum, 1),
        "train.log_every": (train.log_every, 1),
        "train.checkpoint.every": (train.checkpoint.every, 1),
        "train.checkpoint.keep": (train.checkpoint.keep, 1),
        "data.seq_len": (data.seq_len, 1),
        "data.batch_size": (data.batch_size, 1),
        "train.val_every": (train.val_every, 0),
        "train.val_tokens": (train.val_tokens, 0),
        "train.loss_chunk": (train.loss_chunk, 0),
        "train.optim.warmup_steps": (train.optim.warmup_steps, 0),
        "train.optim.grad_clip": (train.optim.grad_clip, 0),
        "train.optim.weight_decay": (train.optim.weight_decay, 0),
        "data.streams": (data.streams, 0),
        "data.prefetch": (data.prefetch, 0),
    }
    for key, (value, smallest) in minimum.items():
        if value < smallest:
            raise ValueError(f"{key}={value} must be >= {smallest}")
    if train.optim.lr <= 0:
        raise ValueError(f"train.optim.lr={train.optim.lr} must be > 0")
    if not 0 <= train.optim.lr_min_ratio <= 1:
        raise ValueError(f"train.optim.lr_min_ratio={train.optim.lr_min_ratio} must be in [0, 1]")
    if train.optim.warmup_steps > train.steps:
        raise ValueError(
            f"train.optim.warmup_steps={train.optim.warmup_steps} exceeds train.steps={train.steps}: "
            "the cosine phase would never start; lower the warmup"
        )
    if needs_data:
        if not data.train_dir:
            raise ValueError("data.train_dir is empty: set the folder of `{dataset}.chunk.{i:02d}.jsonl` files")
        if not data.tokenizer:
            raise ValueError("data.tokenizer is empty: set the tokenizer directory")
