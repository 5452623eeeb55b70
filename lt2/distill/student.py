"""The student: the teacher's looped model with most attention layers replaced by a linear mixer.

`student_args` turns the teacher's ModelArgs into the student's: the same everything (dims, loop count,
norms, head), a new mixer pattern, and linear-mixer heads shaped like the teacher's attention heads so that
its projections can be copied (the hybrid-distillation recipe):

    linear.n_heads = n_heads, linear.head_dim = head_dim, expand_v = 1     q/k/v/o shapes equal the teacher's
    conv_size = 0 (no short convolution), use_gate = True (output gate on)

`build_student` copies every teacher tensor the student has (embeddings, norms, SwiGLU, head, and the full
attention layers whole) and initialises each delta-rule layer (gdn, deltanet, kda) from the teacher's
attention projections: q_proj <- wq, k_proj <- wk, v_proj <- wv (key/value heads repeated over their query
group under GQA), o_proj <- wo. Everything else of the linear mixer (beta, decay and gate projections,
A_log, dt_bias, output norm) keeps its fresh initialisation. Other mixer families start fresh.

A pattern with every layer `full` gives back the teacher exactly: the conversion itself loses nothing.

    >>> student = build_student(teacher, full_layer_pattern(teacher.args.n_layers, [4, 9, 14, 19]))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from lt2.config import ModelArgs, resolve, to_dict
from lt2.model.looped import LoopedLM

logger = logging.getLogger(__name__)

# Linear families whose q/k/v/o projections have the attention shapes (lt2.mixers.delta.DeltaRuleMixer).
COPY_QKVO = ("gdn", "deltanet", "kda")
PROJECTIONS = {"q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "o_proj": "wo"}  # linear mixer <- attention


def full_layer_pattern(n_layers: int, full_layers: Sequence[int], linear: str = "gdn") -> str:
    """The explicit pattern keeping `full_layers` full attention and making every other layer `linear`.

    >>> full_layer_pattern(5, [1, 4])
    'gdn,full,gdn,gdn,full'
    """
    bad = [i for i in full_layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"full-attention layer {bad[0]} is out of range: the teacher has layers 0..{n_layers - 1}")
    if len(set(full_layers)) != len(full_layers):
        raise ValueError(f"full-attention layers {list(full_layers)} list a layer twice")
    return ",".join("full" if i in set(full_layers) else linear for i in range(n_layers))


def student_args(teacher: ModelArgs, pattern: str, linear: dict | None = None) -> ModelArgs:
    """The teacher's ModelArgs with `pattern` and linear heads shaped like its attention heads.

    `linear` overrides those linear settings (e.g. {"use_gate": False}); q/k/v/o are only copied when the
    shapes still match.
    """
    if teacher.layout.is_random or any(s.family != "attention" for s in teacher.layout.specs[0]):
        raise ValueError(f"the teacher must be a softmax-attention model, got pattern {teacher.pattern!r}")
    base = to_dict(teacher)
    base["linear"] = {
        **base["linear"],
        "n_heads": teacher.n_heads,
        "head_dim": teacher.head_dim,
        "expand_v": 1.0,
        "conv_size": 0,
        "use_gate": True,
        "norm_eps": teacher.norm_eps,
        **(linear or {}),
    }
    base["pattern"] = pattern
    return resolve(ModelArgs, base)


def _repeat_heads(weight: torch.Tensor, n_kv_heads: int, n_heads: int) -> torch.Tensor:
    """[Hkv * D, C] -> [H * D, C]: each key/value head's rows repeated for the query heads of its group."""
    rows = weight.view(n_kv_heads, -1, weight.shape[-1])
    return rows.repeat_interleave(n_heads // n_kv_heads, dim=0).reshape(-1, weight.shape[-1])


@torch.no_grad()
def copy_attention_into_linear(student_mixer: torch.nn.Module, teacher_attn: torch.nn.Module) -> None:
    """q/k/v/o of a delta-rule mixer <- a softmax-attention mixer's wq/wk/wv/wo (shapes checked)."""
    for ours, theirs in PROJECTIONS.items():
        src = getattr(teacher_attn, theirs).weight
        if theirs in ("wk", "wv"):
            src = _repeat_heads(src, teacher_attn.n_kv_heads, teacher_attn.n_heads)
        dst = getattr(student_mixer, ours).weight
        if dst.shape != src.shape:
            raise ValueError(
                f"cannot initialise {ours} {tuple(dst.shape)} from the teacher's {theirs} {tuple(src.shape)}: "
                "the linear heads must match the attention heads (linear.head_dim = head_dim, expand_v = 1)"
            )
        dst.copy_(src)


@torch.no_grad()
def build_student(teacher: LoopedLM, pattern: str, linear: dict | None = None, seed: int | None = None) -> LoopedLM:
    """A student LoopedLM (fp32, on the teacher's device) initialised from `teacher` (module docstring)."""
    args = student_args(teacher.args, pattern, linear)
    if seed is not None:
        args.init_seed = seed
    device = teacher.embed.weight.device
    with torch.device("meta"):
        student = LoopedLM(args)
    student.to_empty(device=device)
    student.init_weights()  # fresh: what the teacher has no counterpart for
    own, theirs = student.state_dict(), teacher.state_dict()
    shared = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    for i, layer in enumerate(student.layers):
        prefix = f"layers.{i}.mixer."
        if layer.family == "attention":
            continue
        for key in [k for k in shared if k.startswith(prefix)]:  # same names, different meaning
            del shared[key]
        if layer.family in COPY_QKVO:
            copy_attention_into_linear(layer.mixer, teacher.layers[i].mixer)
        else:
            logger.warning("layer %d (%s): no attention counterpart, initialised fresh", i, layer.family)
    student.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in shared.items()}}, strict=True)
    missing = [k for k in theirs if k not in own and not k.startswith("layers.")]
    if missing:
        raise ValueError(f"teacher tensors the student has no place for: {missing}")
    return student
