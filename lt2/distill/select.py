"""Which layers stay full attention: from the config, or KL-guided after stage 1.

KL-guided selection (`select_by_kl`): start from the stage-1 student (every layer linear); for each layer l,
restore l alone to the teacher's attention, score the mean KL(teacher || candidate) over held-out tokens, and
keep the `n_full` layers whose restoration leaves the lowest KL. Each candidate is scored without training,
which is the cheap form of "restore one layer at a time and keep the top-K by stage-2 loss".
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from lt2.distill.losses import chunked_kl
from lt2.distill.objectives import head_weight
from lt2.distill.student import build_student, full_layer_pattern
from lt2.model.looped import LoopedLM

logger = logging.getLogger(__name__)


@torch.no_grad()
def transfer_linear_mixers(src: LoopedLM, dst: LoopedLM) -> list[int]:
    """Copy the mixer weights of every layer that is linear (the same family) in both models; returns them."""
    moved = []
    for i, (a, b) in enumerate(zip(src.layers, dst.layers, strict=True)):
        if a.family == b.family and a.family != "attention":
            b.mixer.load_state_dict(a.mixer.state_dict(), strict=True)
            moved.append(i)
    return moved


def student_from_stage1(teacher: LoopedLM, stage1: LoopedLM, pattern: str, linear: dict) -> LoopedLM:
    """The stage-2 student: built from the teacher with `pattern`, its linear mixers taken from stage 1."""
    student = build_student(teacher, pattern, linear, seed=stage1.args.init_seed)
    transfer_linear_mixers(stage1, student)
    return student


@torch.no_grad()
def mean_kl(student: LoopedLM, teacher: LoopedLM, rows: np.ndarray, batch: int, chunk: int) -> float:
    """Mean per-token KL(teacher || student) over packed rows [N, T + 1] (inputs are row[:-1])."""
    total, count = 0.0, 0
    device = teacher.embed.weight.device
    for start in range(0, len(rows), batch):
        tokens = torch.from_numpy(rows[start : start + batch, :-1]).long().to(device)
        B, T = tokens.shape
        h = student.hidden_states(tokens, student.seq_info(tokens)).reshape(B * T, -1)
        h_t = teacher.hidden_states(tokens, teacher.seq_info(tokens)).reshape(B * T, -1)
        total += chunked_kl(h, head_weight(student), h_t, head_weight(teacher), chunk).item() * B * T
        count += B * T
    return total / count


def select_by_kl(
    teacher: LoopedLM, stage1: LoopedLM, rows: np.ndarray, n_full: int, linear: dict, batch: int = 8, chunk: int = 4096
) -> tuple[list[int], dict[int, float]]:
    """The `n_full` layers to keep full attention (sorted) and every layer's KL when restored alone."""
    n_layers = teacher.args.n_layers
    if not 0 <= n_full <= n_layers:
        raise ValueError(f"student.n_full={n_full} must lie in [0, {n_layers}] (the teacher's layers)")
    mixer = stage1.layers[0].family
    scores = {}
    for layer in range(n_layers):
        candidate = student_from_stage1(teacher, stage1, full_layer_pattern(n_layers, [layer], mixer), linear).eval()
        scores[layer] = mean_kl(candidate, teacher, rows, batch, chunk)
        logger.info("layer %d restored to attention: KL %.5f", layer, scores[layer])
    keep = sorted(sorted(scores, key=lambda i: (scores[i], i))[:n_full])
    return keep, scores
