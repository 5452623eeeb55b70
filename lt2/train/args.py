"""Arguments of a training run: data, optimisation, checkpointing and parallelism.

Paper values (the defaults here): AdamW (0.9, 0.95), weight decay 0.1, peak lr 3e-4, linear warmup then
cosine to lr_min_ratio * lr, grad clip 1.0, bf16, sequence length 4096, trainer seed 777.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataArgs:
    train_dir: str = ""  # folder of shuffled chunk files `{dataset}.chunk.{i:02d}.jsonl`
    val_file: str = ""  # held-out `{dataset}.val.jsonl`; empty disables validation
    tokenizer: str = ""  # tokenizer directory (tokenizer.json), see lt2.data.tokenizer
    seq_len: int = 4096  # tokens per training sequence (packed, BOS/EOS between documents)
    batch_size: int = 8  # sequences per rank per micro-step
    doc_mask: bool = False  # attention/state never crosses a packed document boundary


@dataclass
class OptimArgs:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    eps: float = 1e-8
    warmup_steps: int = 2000
    lr_min_ratio: float = 1e-6  # cosine decays to lr * lr_min_ratio
    grad_clip: float = 1.0


@dataclass
class CheckpointArgs:
    every: int = 1000  # steps between checkpoints
    keep: int = 3  # newest complete checkpoints kept


@dataclass
class TrainArgs:
    steps: int = 255_000
    grad_accum: int = 1  # micro-steps per optimiser step
    seed: int = 777  # data order / dropout-free trainer RNG; the model's init seed is ModelArgs.init_seed
    dtype: str = "bf16"  # bf16 | fp32 (params and reductions stay fp32 under FSDP mixed precision)
    compile: bool = True  # per-block torch.compile (skipped for mixers that cannot compile)
    activation_checkpointing: str = "none"  # none | full | selective
    fsdp: bool = True  # fully_shard when more than one rank
    log_every: int = 10
    val_every: int = 1000  # steps between validation-loss evaluations (0: never)
    val_tokens: int = 1_000_000  # tokens of the held-out file scored per validation
    optim: OptimArgs = field(default_factory=OptimArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
