"""The training loop: build the pieces, resume, step, log, validate, checkpoint, stop on preemption.

    trainer = Trainer(recipe, run_dir, init_distributed())
    result = trainer.fit(out_dir)          # "completed" or "preempted"
    trainer.close()

One optimizer step = `grad_accum` micro-batches of `batch_size` packed rows per rank. The loss is the mean
next-token CE over all tokens of the step (every micro-batch has the same token count, so the mean of the
micro-batch means is the global mean); FSDP averages gradients over ranks.

What survives a restart: model, optimizer, RNG (DCP) and TrainState (step, tokens, data position,
scheduler) in train_state.json; see lt2.train.checkpoint. A resumed run replays the uninterrupted one exactly:
same batches (the loader's position), same RNG streams, same schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch import nn
from torch.distributed.tensor import DTensor

from lt2.config import to_dict
from lt2.data.loader import Batch, PackedLoader, merge_states, validation_rows
from lt2.model.looped import LoopedLM
from lt2.recipe import Recipe, load_recipe
from lt2.train.checkpoint import RECIPE, Checkpointer, export_checkpoint
from lt2.train.distributed import DistInfo, autocast, control_sum, parallelize, set_gradient_sync
from lt2.train.loss import CausalLMLoss
from lt2.train.metrics import (
    MetricsWriter,
    Throughput,
    log0,
    peak_flops,
    peak_memory_gib,
    train_flops_per_token,
)
from lt2.train.optim import build_optimizer, build_scheduler
from lt2.train.preemption import Preemption

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"


@dataclasses.dataclass
class TrainState:
    """The loop's own resumable state (model, optimizer and RNG are checkpointed by DCP)."""

    step: int = 0  # optimizer steps done
    tokens: int = 0  # global training tokens consumed (sum over ranks)
    data: dict[str, Any] | None = None  # global loader position (lt2.data.loader.merge_states)
    val_pending: bool = False  # a preemption interrupted this step's validation: the resumed run does it first

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.tokens, self.data = state["step"], state["tokens"], state["data"]
        self.val_pending = state["val_pending"]


@dataclasses.dataclass
class TrainResult:
    status: str  # "completed" | "preempted"
    step: int
    checkpoint: Path | None
    out_dir: Path | None = None


# ------------------------------------------------------------------------------------ building
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(recipe: Recipe, info: DistInfo) -> CausalLMLoss:
    """LoopedLM (+ loss) built on the meta device, materialised on this rank's device with the reference
    init (identical on every rank, whatever the world size), then AC -> compile -> FSDP."""
    with torch.device("meta"):
        lm = LoopedLM(recipe.model)
    lm.to_empty(device=info.device)
    lm.init_weights()
    return parallelize(CausalLMLoss(lm, recipe.train.loss_chunk), recipe.train, info)


def recipe_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML (every field, derived sizes included); load_recipe reads it back."""
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(recipe)))


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> float:
    if info.world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)  # gloo has no AVG
        value /= info.world_size
    return value.item()


def train_step(
    model: CausalLMLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    micro_batches: list[Batch],
    recipe: Recipe,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward over the micro-batches, clip, update; returns (mean loss, grad norm) on device."""
    n = len(micro_batches)
    total = torch.zeros((), device=device)
    for i, batch in enumerate(micro_batches):
        batch = batch.to(device)
        set_gradient_sync(model, i == n - 1)
        with autocast(recipe.train, device):
            loss = model(batch.inputs, batch.targets, batch.doc_start)
        (loss / n).backward()
        total += loss.detach()
    clip = recipe.train.optim.grad_clip or math.inf  # inf: measure the norm, change nothing
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
    if isinstance(grad_norm, DTensor):
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n, grad_norm


# ------------------------------------------------------------------------------------- trainer
class Trainer:
    """Everything one run needs, built in the constructor; `fit` trains, `close` releases (even on error)."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: str | Path,
        info: DistInfo,
        build: Callable[[Recipe, DistInfo], nn.Module] | None = None,
        lr_scale: Callable[[str], float] | None = None,
    ):
        """`build` makes the objective: a module holding the trained LoopedLM as `.lm`, whose forward takes
        (inputs, targets, doc_start, reduction) like CausalLMLoss (default: `build_model`, pre-training);
        distillation passes its own. `lr_scale(parameter name)` multiplies the lr of some parameters."""
        from lt2.data.tokenizer import Tokenizer

        self.recipe, self.info, self.run_dir = recipe, info, Path(run_dir)
        self.loader: PackedLoader | None = None
        self.metrics: MetricsWriter | None = None
        seed_everything(recipe.train.seed + info.rank)
        self.tokenizer = Tokenizer.load(recipe.data.tokenizer)
        if self.tokenizer.vocab_size > recipe.model.vocab_size:
            raise ValueError(
                f"model.vocab_size={recipe.model.vocab_size} is smaller than the tokenizer's "
                f"{self.tokenizer.vocab_size} tokens ({recipe.data.tokenizer})"
            )
        self.model = (build or build_model)(recipe, info)
        self.optimizer = build_optimizer(self.model.lm, recipe.train.optim, info.device, lr_scale)
        self.scheduler = build_scheduler(self.optimizer, recipe.train.optim, recipe.train.steps)
        self.checkpointer = Checkpointer(self.run_dir, recipe.train.checkpoint.keep, info)
        self.state = TrainState()
        latest = self.checkpointer.find_latest()
        if latest is not None:
            self._check_recipe(latest)
            saved = self.checkpointer.load(latest, self.model.lm, self.optimizer, self.scheduler)
            self.state.load_state_dict(saved)
            log0("resumed from %s (step %d, %d tokens)", latest, self.state.step, self.state.tokens)
        self.loader = PackedLoader(
            recipe.data,
            self.tokenizer,
            info.rank,
            info.world_size,
            state=self.state.data,
            pin_memory=info.device.type == "cuda",
        )
        self.val = None
        if recipe.data.val_file and recipe.train.val_every:
            self.val = validation_rows(
                recipe.data.val_file, self.tokenizer, recipe.data.seq_len, recipe.train.val_tokens
            )
        self.metrics = MetricsWriter(self.run_dir / METRICS, info.rank, recipe.train.steps, self.state.step)
        self.throughput = Throughput(
            train_flops_per_token(recipe.model, recipe.data.seq_len),
            peak_flops(info.device, recipe.train.dtype),
            info.world_size,
        )

    def _check_recipe(self, checkpoint: Path) -> None:
        saved = load_recipe(checkpoint / RECIPE)
        if to_dict(saved.model) != to_dict(self.recipe.model):
            diff = sorted(k for k, v in to_dict(saved.model).items() if to_dict(self.recipe.model)[k] != v)
            raise ValueError(
                f"model settings differ from checkpoint {checkpoint} ({', '.join('model.' + k for k in diff)}); "
                "resume with the same model or use a new --dump-dir"
            )
        for section in ("data", "train"):
            old, new = to_dict(getattr(saved, section)), to_dict(getattr(self.recipe, section))
            changed = sorted(k for k in new if old.get(k) != new[k])
            if changed:
                log0(
                    "resuming with changed settings: %s",
                    ", ".join(f"{section}.{k}" for k in changed),
                    level=logging.WARNING,
                )

    # -------------------------------------------------------------------------------- pieces
    def _train_state(self) -> dict[str, Any]:
        parts = [None] * self.info.world_size
        if self.info.world_size > 1:
            dist.all_gather_object(parts, self.loader.state_dict(), group=self.info.control_group)
        else:
            parts = [self.loader.state_dict()]
        self.state.data = merge_states(parts)
        assert self.state.data["tokens"] == self.state.tokens, (self.state.data["tokens"], self.state.tokens)
        return {**self.state.state_dict(), "scheduler": self.scheduler.state_dict()}

    def save(self) -> Path:
        if self.checkpointer.saved_step == self.state.step:  # already on disk (just saved, or resumed from)
            return self.checkpointer.path(self.state.step)
        path = self.checkpointer.save(
            self.state.step, self.model.lm, self.optimizer, self._train_state(), recipe_yaml(self.recipe)
        )
        streams = self.state.data["streams"].values()
        log0(
            "data position: %d tokens, %d documents read, %d malformed lines skipped",
            self.state.tokens,
            sum(s["docs"] for s in streams),
            sum(s["malformed"] for s in streams),
        )
        return path

    @torch.no_grad()
    def evaluate(self, preemption: Preemption) -> dict[str, float] | None:
        """Mean CE over the held-out rows (split over ranks); None when a preemption interrupts it."""
        rows, starts = self.val
        B, W, T = self.recipe.data.batch_size, self.info.world_size, self.recipe.data.seq_len
        self.model.eval()  # a random layout scores its vote (and draws no training placement)
        try:
            return self._evaluate(rows, starts, B, W, T, preemption)
        finally:
            self.model.train()

    def _evaluate(self, rows, starts, B: int, W: int, T: int, preemption: Preemption) -> dict[str, float] | None:
        total = torch.zeros((), dtype=torch.float64, device=self.info.device)
        for first in range(0, len(rows), B * W):
            if control_sum([preemption.flag], self.info)[0]:
                return None
            # Every rank runs the same number of forwards (FSDP gathers are collective): ranks past the end
            # score a copy of row 0 with weight 0.
            index = np.arange(first + self.info.rank * B, first + (self.info.rank + 1) * B)
            valid = index < len(rows)
            index = np.where(valid, index, 0)
            tokens = torch.from_numpy(rows[index]).long().to(self.info.device)
            doc_start = None
            if self.recipe.data.doc_mask:
                doc_start = torch.from_numpy(starts[index][:, :-1]).to(self.info.device)
            with autocast(self.recipe.train, self.info.device):
                losses = self.model(tokens[:, :-1], tokens[:, 1:], doc_start, reduction="none")  # [B, T]
            weight = torch.from_numpy(valid).to(self.info.device, torch.float64)
            total += (losses.double().sum(1) * weight).sum()
        if self.info.world_size > 1:
            dist.all_reduce(total)
        return {"val_loss": total.item() / (len(rows) * T), "val_tokens": len(rows) * T}

    # ----------------------------------------------------------------------------------- fit
    def fit(self, out_dir: str | Path | None = None, preemption: Preemption | None = None) -> TrainResult:
        """Train to `train.steps` (or until preempted); on completion write out_dir (model, metrics, recipe).

        `preemption` is the signal flag to poll; `lt2 train` installs it before building the Trainer, so that
        a signal during start-up (loading, compilation) also ends in a checkpoint and exit 75.
        """
        if preemption is None:
            with Preemption() as preemption:
                return self.fit(out_dir, preemption)
        train, data = self.recipe.train, self.recipe.data
        tokens_per_step = data.batch_size * data.seq_len * train.grad_accum * self.info.world_size
        stop = control_sum([preemption.flag], self.info)[0] > 0
        if self.state.val_pending and not stop:
            stop = not self._validate(preemption)
        self.throughput.reset()
        while self.state.step < train.steps and not stop:
            micro = [next(self.loader) for _ in range(train.grad_accum)]
            lr = self.optimizer.param_groups[0]["lr"]
            loss, grad_norm = train_step(
                self.model, self.optimizer, self.scheduler, micro, self.recipe, self.info.device
            )
            self.state.step += 1
            self.state.tokens += tokens_per_step
            self.throughput.add(tokens_per_step)
            flag, fingerprint = control_sum([preemption.flag, sum(b.fingerprint for b in micro)], self.info)
            stop = flag > 0
            step = self.state.step
            if step % train.log_every == 0 or step == train.steps:
                record = {
                    "step": step,
                    "loss": all_reduce_mean(loss, self.info),
                    "lr": lr,
                    "grad_norm": grad_norm.item(),
                    "tokens": self.state.tokens,
                    "data_fingerprint": fingerprint,
                    **self.throughput.report(),
                    "peak_mem_gib": peak_memory_gib(self.info.device),
                }
                self.metrics.write(record)
            self.metrics.advance()
            if self.val is not None and (step % train.val_every == 0 or step == train.steps):
                self.state.val_pending = True
                stop = not self._validate(preemption) or stop
            if step % train.checkpoint.every == 0 or step == train.steps or stop:
                self.save()
                self.throughput.reset()
        if stop:
            path = self.save()  # no-op when this step is already on disk
            log0("preempted (signal %s): checkpoint %s; exiting for requeue", preemption.signal, path)
            return TrainResult("preempted", self.state.step, path)
        path = self.save()
        out = Path(out_dir) if out_dir is not None else None
        if out is not None and self.info.is_main:
            self._write_outputs(path, out)
        return TrainResult("completed", self.state.step, path, out)

    def _validate(self, preemption: Preemption) -> bool:
        """Run the pending validation and log it; False when a preemption interrupted it (still pending)."""
        result = self.evaluate(preemption)
        self.throughput.reset()
        if result is None:
            return False
        self.state.val_pending = False
        self.metrics.write({"step": self.state.step, **result})
        log0("step %d: val_loss %.4f", self.state.step, result["val_loss"])
        return True

    def _write_outputs(self, checkpoint: Path, out: Path) -> None:
        """OUTDIR/{model.safetensors, config.json, metrics.jsonl, recipe.yaml}, all at once (rank 0)."""
        self.metrics.close()
        export_checkpoint(checkpoint, out, {METRICS: self.run_dir / METRICS, RECIPE: checkpoint / RECIPE})
        log0("wrote %s", out)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()
        if self.metrics is not None:
            self.metrics.close()
