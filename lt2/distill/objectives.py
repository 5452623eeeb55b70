"""What each distillation stage minimises, as modules the training loop drives like `CausalLMLoss`.

    objective(inputs [B, T], targets [B, T], doc_start [B, T] | None) -> scalar loss (fp32)
    objective(..., reduction="none") -> the student's per-token CE [B, T] (validation), without gradients

Both hold the student as `.lm` (what the loop checkpoints and the optimiser trains) and the frozen teacher
outside the module tree (a tuple), so that neither FSDP, the optimiser nor the checkpoint sees it: a resumed
stage rebuilds the same teacher from its folder.

- `AttentionAlignment` (stage 1): the teacher runs; at every (loop, layer) whose student layer is linear, the
  student mixer gets the teacher's normed mixer input and regresses the teacher attention's output (MSE).
  Only the linear mixers train.
- `LogitDistillation` (stage 2): both models run on the tokens; the loss is the full-vocabulary
  KL(teacher || student), computed in chunks (lt2.distill.losses.chunked_kl).
Stage 3 fine-tunes the student with the pre-training objective (lt2.train.loss.CausalLMLoss).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from lt2.distill.losses import alignment_mse, chunk_kl_and_grad, chunked_kl
from lt2.model.looped import LoopedLM
from lt2.train.loss import chunk_loss_and_grad, token_losses


def head_weight(lm: LoopedLM) -> torch.Tensor:
    return lm.embed.weight if lm.head is None else lm.head.weight


@contextlib.contextmanager
def capture_mixers(model: LoopedLM) -> Iterator[list[tuple]]:
    """Within the block, every mixer call of `model` appends (layer, x, seq, spec, output) to the yielded list,
    in call order (loop-major). x is the mixer's input: the block's normed, pad-masked hidden states."""
    calls: list[tuple] = []

    def hook(layer):
        def record(module, args, output):
            x, seq, _cache, spec = args
            calls.append((layer, x.detach(), seq, spec, output.detach()))

        return record

    handles = [block.mixer.register_forward_hook(hook(i)) for i, block in enumerate(model.layers)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


class _Objective(nn.Module):
    def __init__(self, student: LoopedLM, teacher: LoopedLM, chunk: int):
        super().__init__()
        self.lm = student
        self._teacher = (teacher.eval().requires_grad_(False),)  # a tuple: not a submodule
        self.chunk = chunk
        self.chunk_fn = chunk_loss_and_grad  # parallelize() may compile it; used for the CE of validation

    @property
    def teacher(self) -> LoopedLM:
        return self._teacher[0]

    def student_token_losses(self, inputs, targets, doc_start) -> torch.Tensor:
        B, T = inputs.shape
        h = self.lm.hidden_states(inputs, self.lm.seq_info(inputs, doc_start))
        return token_losses(h.reshape(B * T, -1), head_weight(self.lm), targets.reshape(B * T), self.chunk).view(B, T)


class AttentionAlignment(_Objective):
    """Stage 1: MSE of each linear student mixer against the teacher attention output it replaces."""

    def __init__(self, student: LoopedLM, teacher: LoopedLM, chunk: int = 4096):
        super().__init__(student, teacher, chunk)
        self.linear_layers = [i for i, block in enumerate(student.layers) if block.family != "attention"]
        if not self.linear_layers:
            raise ValueError("stage 1 aligns linear mixers, but every student layer is attention")
        student.requires_grad_(False)
        for i in self.linear_layers:
            student.layers[i].mixer.requires_grad_(True)

    def forward(self, inputs, targets, doc_start=None, reduction: str = "mean") -> torch.Tensor:
        if reduction == "none":
            return self.student_token_losses(inputs, targets, doc_start)
        with torch.no_grad(), capture_mixers(self.teacher) as calls:
            self.teacher.hidden_states(inputs, self.teacher.seq_info(inputs, doc_start))
        linear = set(self.linear_layers)
        outputs, targets_ = [], []
        for layer, x, seq, spec, y in calls:
            if layer in linear:
                outputs.append(self.lm.layers[layer].mixer(x, seq, None, spec))
                targets_.append(y)
        return alignment_mse(outputs, targets_)


class LogitDistillation(_Objective):
    """Stage 2: full-vocabulary KL(teacher || student) per token, in chunks over the tokens.

    `kl_fn` computes one chunk (lt2.distill.losses.chunk_kl_and_grad); the stage swaps in a compiled one."""

    def __init__(self, student: LoopedLM, teacher: LoopedLM, chunk: int = 4096):
        super().__init__(student, teacher, chunk)
        self.kl_fn = chunk_kl_and_grad

    def forward(self, inputs, targets, doc_start=None, reduction: str = "mean") -> torch.Tensor:
        if reduction == "none":
            return self.student_token_losses(inputs, targets, doc_start)
        B, T = inputs.shape
        with torch.no_grad():
            h_t = self.teacher.hidden_states(inputs, self.teacher.seq_info(inputs, doc_start))
        h = self.lm.hidden_states(inputs, self.lm.seq_info(inputs, doc_start))
        return chunked_kl(
            h.reshape(B * T, -1),
            head_weight(self.lm),
            h_t.reshape(B * T, -1),
            head_weight(self.teacher),
            self.chunk,
            self.kl_fn,
        )
