"""The curriculum runner: train one arm at one loop count on growing programs, and record how far it gets.

    stage k: programs with n = m = stages[k]; train until the accuracy of the final answer on
    `eval_samples` fresh strict programs (every `eval_every` steps) reaches `threshold`, or until
    `stage_steps` steps are spent; a passed stage moves on, a failed one ends the run.
    n_max = the largest n passed (0: none).

The model carries over from stage to stage, as do the optimizer (AdamW, weight decay on matrices only) and
its warmup schedule (lt2.train.optim). Every batch is a function of (seed, stage, step), and every evaluation
of (seed, stage, step, 1): a resumed run sees the data the uninterrupted one would have seen.

Resumable like training: the model, optimizer and RNG go to DCP checkpoints (lt2.train.checkpoint, atomic,
hashed), the curriculum state (stage, step, per-stage records, scheduler) to their train_state.json; a
checkpoint is written every `train.checkpoint.every` steps, after every stage and on preemption (SIGTERM or
SIGUSR1, lt2.train.preemption), and a new run with the same run directory continues at the same stage and step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lt2.config import ModelArgs, resolve, to_dict
from lt2.model.looped import LoopedLM
from lt2.synth.args import SynthArgs
from lt2.synth.arms import arm_model, get_arm
from lt2.synth.task import IGNORE, TokenBatch, Vocab, max_length, program_rng, render, sample_programs
from lt2.train.checkpoint import RECIPE, Checkpointer
from lt2.train.distributed import DistInfo
from lt2.train.optim import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

EVAL_KEY = 1  # the purpose key of evaluation programs (training batches use 0)
CHANCE, SHORTCUT, MAJORITY = 0.5, 0.6, 0.69  # reference accuracies (lt2.synth.task docstring)


@dataclasses.dataclass
class CurriculumState:
    """What the loop needs to continue after a restart (model/optimizer/RNG are in the DCP checkpoint)."""

    stage: int = 0  # index into the budget's stages
    step: int = 0  # optimizer steps done in this stage
    total_steps: int = 0  # optimizer steps done over all stages
    done: bool = False
    stopped: str = ""  # why the run ended early: "" (it did not) or "time_limit"
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one per finished stage
    evals: list[dict[str, float]] = dataclasses.field(default_factory=list)  # this stage's evaluations so far

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, state[f.name])


@dataclasses.dataclass
class CurriculumResult:
    status: str  # "completed" | "preempted"
    record: dict[str, Any]


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE over the target positions: logits [B, L, V], targets [B, L] (IGNORE elsewhere)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def run_config(args: SynthArgs, arm: str, loop_count: int) -> dict[str, Any]:
    """The resolved configuration of one run (plain YAML types): what provenance records and a resume matches."""
    config = {"arm": arm, "loop_count": loop_count, **to_dict(args)}
    config["model"] = to_dict(arm_model(args.model, arm, loop_count, args.nsa_heads))
    return json.loads(json.dumps(config))  # tuples -> lists, as the YAML in a checkpoint reads back


# Settings that change how a run goes, not what it computes: a resume may change them.
RUNTIME_KEYS = (("train", "threads"), ("train", "log_every"), ("train", "checkpoint"), ("curriculum", "time_limit_s"))


def result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """`config` without RUNTIME_KEYS: what a resumed run must share with the run it continues."""
    kept = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for section, key in RUNTIME_KEYS:
        kept[section].pop(key, None)
    return kept


class Curriculum:
    """One (arm, loop_count) run in `run_dir`; `run(preemption)` trains until done or preempted."""

    def __init__(self, args: SynthArgs, arm: str, loop_count: int, run_dir: str | Path, device: torch.device):
        args.validate()
        self.args, self.arm, self.loop_count, self.device = args, arm, loop_count, torch.device(device)
        self.model_args: ModelArgs = arm_model(args.model, arm, loop_count, args.nsa_heads)
        self.vocab = Vocab(self.model_args.vocab_size - Vocab.ADDR0)
        self.stages = args.stages()
        torch.manual_seed(args.train.seed)
        with torch.device("meta"):
            self.model = LoopedLM(self.model_args)
        self.model.to_empty(device=self.device)
        self.model.init_weights()
        self.optimizer = build_optimizer(self.model, args.train.optim, self.device)
        self.scheduler = build_scheduler(
            self.optimizer, args.train.optim, args.curriculum.stage_steps * len(self.stages)
        )
        info = DistInfo(rank=0, world_size=1, local_rank=0, device=self.device, control_group=None)
        self.checkpointer = Checkpointer(run_dir, args.train.checkpoint.keep, info)
        self.state = CurriculumState()
        self.config = run_config(args, arm, loop_count)
        latest = self.checkpointer.find_latest()
        if latest is not None:
            saved = result_settings(OmegaConf.to_container(OmegaConf.load(latest / RECIPE)))
            current = result_settings(self.config)
            if saved != current:
                changed = sorted(k for k in current if saved.get(k) != current[k])
                raise ValueError(
                    f"run directory {run_dir} holds a curriculum with other settings ({', '.join(changed)}); "
                    "resume with the same configuration or use a new --dump-dir"
                )
            saved_state = self.checkpointer.load(latest, self.model, self.optimizer, self.scheduler)
            self.state.load_state_dict(saved_state["curriculum"])
            logger.info("resumed %s at stage %d step %d", latest, self.state.stage, self.state.step)

    # ------------------------------------------------------------------ pieces
    def _autocast(self):
        if self.args.train.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def batch(self, stage: int, step: int, size: int, purpose: int) -> TokenBatch:
        """Programs of stage `stage` drawn for (step, purpose); evaluation programs are strict."""
        n = self.stages[stage]
        task = self.args.task
        reveals = task.reveals and purpose != EVAL_KEY
        rng = program_rng(self.args.train.seed, stage, step, purpose)
        programs = sample_programs(rng, size, n, n, reveals, task.strict_share)
        # CUDA: one padded length per stage, so compiled kernels (flex_attention for windows is compiled with
        # static shapes) and autotuned ones see one shape; right padding changes no real position's output
        pad_to = max_length(n, n) if self.device.type == "cuda" else None
        return render(programs, self.vocab, task.loss_tokens, pad_to).to(self.device)

    def train_step(self, batch: TokenBatch) -> float:
        with self._autocast():
            loss = masked_loss(self.model(batch.inputs), batch.targets)
        loss.backward()
        clip = self.args.train.optim.grad_clip or math.inf
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    @torch.no_grad()
    def evaluate(self) -> float:
        """Accuracy of the final answer (argmax over the whole vocabulary) on fresh strict programs."""
        c, correct = self.args.curriculum, 0
        batch = self.batch(self.state.stage, self.state.total_steps, c.eval_samples, EVAL_KEY)
        self.model.eval()
        try:
            for start in range(0, c.eval_samples, c.eval_batch):
                part = slice(start, start + c.eval_batch)
                with self._autocast():
                    h = self.model.hidden_states(batch.inputs[part], self.model.seq_info(batch.inputs[part]))
                rows = torch.arange(h.shape[0], device=h.device)
                logits = self.model.output(h[rows, batch.answer_index[part]])  # [b, V]: answer positions only
                correct += (logits.argmax(-1) == batch.answer[part]).sum().item()
        finally:
            self.model.train()
        return correct / c.eval_samples

    def save(self) -> Path:
        train_state = {"curriculum": self.state.state_dict(), "scheduler": self.scheduler.state_dict()}
        config_yaml = OmegaConf.to_yaml(OmegaConf.create(self.config))
        return self.checkpointer.save(self.state.total_steps, self.model, self.optimizer, train_state, config_yaml)

    def _finish_stage(self, passed: bool, cut_short: bool = False) -> None:
        s = self.state
        best = max((e["accuracy"] for e in s.evals), default=float("nan"))
        last = s.evals[-1]["accuracy"] if s.evals else float("nan")
        n = self.stages[s.stage]
        s.records.append({"stage": s.stage, "n": n, "m": n, "steps": s.step, "accuracy": last, "best_accuracy": best,
                          "passed": passed, "cut_short": cut_short, "evals": s.evals})  # fmt: skip
        logger.info("stage %d (n = m = %d): %s after %d steps, accuracy %.3f",
                    s.stage, n, "passed" if passed else "failed", s.step, last)  # fmt: skip
        s.evals, s.step = [], 0
        s.stage += 1
        s.done = not passed or s.stage == len(self.stages)

    # ------------------------------------------------------------------- run
    def run(self, preemption) -> CurriculumResult:
        """Train until the curriculum ends (or `preemption.flag` is set; then checkpoint and stop)."""
        args, s = self.args, self.state
        c, every = args.curriculum, args.train.checkpoint.every
        self.model.train()
        started = time.perf_counter()
        while not s.done:
            if preemption.flag:
                self.save()
                return CurriculumResult("preempted", self.record())
            loss = self.train_step(self.batch(s.stage, s.step, args.train.batch_size, 0))
            s.step += 1
            s.total_steps += 1
            if s.step % args.train.log_every == 0:
                logger.info("stage %d step %d loss %.4f (%.1f s)", s.stage, s.step, loss, time.perf_counter() - started)
            passed = None
            if s.step % c.eval_every == 0 or s.step == c.stage_steps:
                accuracy = self.evaluate()
                s.evals.append({"step": s.step, "accuracy": accuracy, "loss": loss})
                logger.info("stage %d step %d: eval accuracy %.3f", s.stage, s.step, accuracy)
                if accuracy >= c.threshold:
                    passed = True
                elif s.step == c.stage_steps:
                    passed = False
            if passed is None and c.time_limit_s and time.perf_counter() - started >= c.time_limit_s:
                passed, s.stopped = False, "time_limit"
                logger.warning("time limit of %.0f s spent: stage %d ends here", c.time_limit_s, s.stage)
            if passed is not None:
                self._finish_stage(passed, cut_short=bool(s.stopped))
                self.save()
            elif s.total_steps % every == 0:
                self.save()
        self.save()
        return CurriculumResult("completed", self.record())

    def record(self) -> dict[str, Any]:
        """The run's result: n_max, per stage the steps used and the accuracy reached, and the setup."""
        s, spec = self.state, get_arm(self.arm)
        passed = [r["n"] for r in s.records if r["passed"]]
        return {
            "arm": self.arm,
            "label": spec.label,
            "hybrid": spec.hybrid,
            "pattern": self.model_args.pattern,
            "loop_count": self.loop_count,
            "budget": self.args.budget,
            "n_max": max(passed, default=0),
            "stages_run": self.stages,
            "stages": s.records,
            "total_steps": s.total_steps,
            "complete": s.done,
            "stopped": s.stopped,
            "reveals": self.args.task.reveals,
            "strict_share": self.args.task.strict_share if self.args.task.reveals else 1.0,
            "loss_tokens": self.args.task.loss_tokens,
            "threshold": self.args.curriculum.threshold,
            "chance": CHANCE,
            "shortcut": SHORTCUT,
            "majority": MAJORITY,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
        }


def load_synth_args(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> SynthArgs:
    """Resolve a synthetic config: SynthArgs defaults -> YAML at `path` -> dot-list overrides."""
    args = resolve(SynthArgs, path, overrides=overrides)
    args.validate()
    return args
