"""Configuration of the synthetic curriculum: the task, the curriculum, the training, the backbone.

One YAML per budget (config/synth/tiny.yaml, config/synth/paper.yaml), resolved by lt2.config.resolve:
dataclass defaults -> YAML -> dot-list overrides. The arm (mixer layout) and the loop count come from the
command line; lt2.synth.arms turns them and `model` into a ModelArgs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lt2.config import ModelArgs
from lt2.train.args import DTYPES, CheckpointArgs, OptimArgs


@dataclass
class TaskArgs:
    reveals: bool = True  # intermediate state reveals (`assert x == @addr`) in training programs
    strict_share: float = 0.2  # share of training programs without reveals (Olmo Hybrid: 20%)
    loss_tokens: str = "answers"  # answers: reveal addresses + final bit are targets; all: every next token


@dataclass
class CurriculumArgs:
    stages: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256])  # n = m per stage
    max_stages: int = 0  # stop after this many stages (0: all); the tiny budget caps it
    threshold: float = 0.90  # eval accuracy that passes a stage
    eval_every: int = 500  # optimizer steps between evaluations
    eval_samples: int = 256  # fresh strict programs per evaluation
    eval_batch: int = 256  # programs per evaluation forward
    stage_steps: int = 100_000  # step budget of one stage
    # Wall-clock budget of one process in seconds (0: none): when spent, the current stage is recorded as not
    # passed (cut short) and the run ends with its record. For a run that must fit a fixed slot; it makes
    # n_max depend on the hardware's speed, which the record then says (`stopped: time_limit`).
    time_limit_s: float = 0.0


@dataclass
class SynthTrainArgs:
    batch_size: int = 32  # programs per optimizer step
    seed: int = 777  # data seed: every batch is a function of (seed, stage, step)
    dtype: str = "fp32"  # bf16: autocast on CUDA; fp32: everything in fp32
    threads: int = 0  # torch CPU threads (0: torch's default)
    log_every: int = 50
    optim: OptimArgs = field(default_factory=lambda: OptimArgs(lr=1e-3, warmup_steps=100, lr_min_ratio=1.0))
    checkpoint: CheckpointArgs = field(default_factory=lambda: CheckpointArgs(every=1000, keep=2))


def _synth_model() -> ModelArgs:
    # The paper's backbone: 4 layers, width 256, SwiGLU 1024, 4 heads of 64; linear heads match (64, expand 1).
    return ModelArgs(
        vocab_size=16 + 256, dim=256, n_layers=4, loop_count=1, n_heads=4, ffn_dim=1024, max_seqlen=4096,
        window=64, init_seed=42,
    )  # fmt: skip


@dataclass
class SynthArgs:
    budget: str = "paper"  # a name for the record and the caption (tiny | paper)
    task: TaskArgs = field(default_factory=TaskArgs)
    curriculum: CurriculumArgs = field(default_factory=CurriculumArgs)
    train: SynthTrainArgs = field(default_factory=SynthTrainArgs)
    model: ModelArgs = field(default_factory=_synth_model)
    nsa_heads: int = 16  # query heads of NSA layers (one KV head); 0: the model's heads (see lt2.synth.arms)

    def stages(self) -> list[int]:
        """The stages this budget runs (n = m each)."""
        cap = self.curriculum.max_stages or len(self.curriculum.stages)
        return self.curriculum.stages[:cap]

    def validate(self) -> None:
        """Cross-field checks; ValueError naming the key and the valid values."""
        c, t = self.curriculum, self.train
        if not c.stages or any(s < 5 for s in c.stages) or sorted(c.stages) != c.stages:
            raise ValueError(f"curriculum.stages={c.stages} must be increasing sizes >= 5 (five distinct pointers)")
        if max(c.stages) + 16 > self.model.vocab_size:
            raise ValueError(
                f"model.vocab_size={self.model.vocab_size} is smaller than the task's 16 + {max(c.stages)} tokens"
            )
        if not 0 < c.threshold <= 1:
            raise ValueError(f"curriculum.threshold={c.threshold} must lie in (0, 1]")
        minimum = {
            "curriculum.max_stages": (c.max_stages, 0),
            "curriculum.eval_every": (c.eval_every, 1),
            "curriculum.eval_samples": (c.eval_samples, 1),
            "curriculum.eval_batch": (c.eval_batch, 1),
            "curriculum.stage_steps": (c.stage_steps, 1),
            "curriculum.time_limit_s": (c.time_limit_s, 0),
            "train.batch_size": (t.batch_size, 1),
            "nsa_heads": (self.nsa_heads, 0),
            "train.threads": (t.threads, 0),
            "train.log_every": (t.log_every, 1),
            "train.checkpoint.every": (t.checkpoint.every, 1),
            "train.checkpoint.keep": (t.checkpoint.keep, 1),
        }
        for key, (value, smallest) in minimum.items():
            if value < smallest:
                raise ValueError(f"{key}={value} must be >= {smallest}")
        if t.dtype not in DTYPES:
            raise ValueError(f"train.dtype={t.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.task.loss_tokens not in ("answers", "all"):
            raise ValueError(f"task.loss_tokens={self.task.loss_tokens!r}; valid: answers, all")
        if not 0 <= self.task.strict_share <= 1:
            raise ValueError(f"task.strict_share={self.task.strict_share} must lie in [0, 1]")
