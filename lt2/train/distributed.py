"""Process group and device, and how the model is parallelised: activation checkpointing -> compile -> FSDP2.

Process group (`init_distributed`), from the first of:
- torchrun: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
- SLURM (`srun lt2 train ...`, one task per GPU): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master is
  MASTER_ADDR or the first host of SLURM_JOB_NODELIST (`scontrol show hostnames`), the port MASTER_PORT or
  one derived from SLURM_JOB_ID;
- neither: one process, with an in-memory store (no network).
nccl on CUDA, gloo on CPU. A second, gloo group carries the per-step control all-reduce (preemption flag,
data fingerprint) on the CPU, so that it never waits for the GPU stream.

`parallelize` applies, in this fixed order (torchtitan's): activation checkpointing per block (none, full,
or selective: keep matmul and attention outputs, recompute norms, RoPE and activations), torch.compile per
block (only for mixer families on COMPILE_ALLOW; others get their SwiGLU compiled), then FSDP2 per block
and on the root with bf16 params / fp32 gradient reduction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from lt2.train.args import TrainArgs
from lt2.train.loss import CausalLMLoss, chunk_loss_and_grad

logger = logging.getLogger(__name__)

# Mixer families whose blocks torch.compile traces whole, and why it can.
COMPILE_ALLOW: dict[str, str] = {
    "attention": "SDPA and flex_attention are traced natively by dynamo (flex is compiled by design)",
}
# Families whose mixer is left eager (their block's SwiGLU is still compiled), and why.
_FLA_REASON = (
    "its CUDA path calls fla Triton autograd functions that are not torch.library custom ops: dynamo traces "
    "into their Python launchers (autotuners, host-side checks), breaks the graph and has produced wrong "
    "results (fla-org/flash-linear-attention#52)"
)
COMPILE_DENY: dict[str, str] = {
    "gdn": _FLA_REASON,
    "kda": _FLA_REASON,
    "deltanet": _FLA_REASON,
    "mamba2": _FLA_REASON,
    "hgrn2": _FLA_REASON,
    "retnet": _FLA_REASON,
    "nsa": _FLA_REASON,
    "dsa": "its indexer and sparse attention are own Triton kernels launched from Python, not custom ops",
}


# ------------------------------------------------------------------------------ process group
@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    control_group: dist.ProcessGroup | None  # gloo group for host-side all-reduces

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _slurm_master() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if nodelist and shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    raise ValueError("running under SLURM with several tasks but neither MASTER_ADDR nor scontrol is available")


def _env_from_slurm() -> None:
    """Translate SLURM's task variables into the ones torch's env:// rendezvous reads."""
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    os.environ.setdefault("MASTER_ADDR", _slurm_master())
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))


def init_distributed() -> DistInfo:
    """Initialise the default process group (see module docstring) and pick this rank's device."""
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        _env_from_slurm()
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if "RANK" in os.environ:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend, device_id=device if cuda else None)
    else:
        rank, world_size, local_rank = 0, 1, 0
        device = torch.device("cuda", 0) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    control = dist.new_group(backend="gloo") if backend != "gloo" else None
    return DistInfo(rank, world_size, local_rank, device, control)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def control_sum(values: list[int], info: DistInfo) -> list[int]:
    """Element-wise sum over ranks of small host-side integers (int64), on the gloo control group."""
    t = torch.tensor(values, dtype=torch.int64)
    if info.world_size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=info.control_group)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier(group=info.control_group)


# ----------------------------------------------------------------------------- parallelism
def compile_policy(family: str) -> tuple[bool, str]:
    """(compile the whole block?, why) for a mixer family; unknown families stay eager."""
    if family in COMPILE_ALLOW:
        return True, COMPILE_ALLOW[family]
    if family in COMPILE_DENY:
        return False, COMPILE_DENY[family]
    return False, "not on the compile allow-list (add it to COMPILE_ALLOW with a reason once it traces cleanly)"


def _sac_save_ops() -> set:
    aten = torch.ops.aten
    names = [
        "mm",
        "addmm",
        "bmm",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    ]
    ops = {getattr(aten, n).default for n in names if hasattr(aten, n)}
    if hasattr(torch.ops.higher_order, "flex_attention"):
        ops.add(torch.ops.higher_order.flex_attention)
    return ops


def _sac_policy(save_ops: set, ctx, op, *args, **kwargs) -> CheckpointPolicy:
    # Matmuls and attention are expensive to recompute and their outputs are what backward needs most;
    # norms (fp32 upcasts), RoPE, SiLU and gating are cheap elementwise work whose outputs dominate memory.
    return CheckpointPolicy.MUST_SAVE if op in save_ops else CheckpointPolicy.PREFER_RECOMPUTE


def apply_activation_checkpointing(lm: nn.Module, mode: str) -> None:
    if mode == "none":
        return
    context_fn = {}
    if mode == "selective":
        policy = functools.partial(_sac_policy, _sac_save_ops())
        context_fn = {"context_fn": functools.partial(create_selective_checkpoint_contexts, policy)}
    for i, block in enumerate(lm.layers):
        # No dropout in the model, so the recomputation needs no RNG replay.
        lm.layers[i] = checkpoint_wrapper(block, preserve_rng_state=False, **context_fn)


def apply_compile(lm: nn.Module, loss: CausalLMLoss, loop_count: int) -> None:
    # Each block is called loop_count times per forward (and again without grad for validation); a
    # loop-level schedule gives it a different MixerSpec per loop, each one a guard and a compiled graph.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * loop_count)
    for i, block in enumerate(lm.layers):
        family = lm.layout.family(i)
        whole, reason = compile_policy(family)
        if whole:
            lm.layers[i] = torch.compile(block)
        else:
            inner = getattr(block, "_checkpoint_wrapped_module", block)
            inner.ffn = torch.compile(inner.ffn)
            logger.info("layer %d (%s): mixer left eager, SwiGLU compiled: %s", i, family, reason)
    loss.chunk_fn = torch.compile(chunk_loss_and_grad)


def mixed_precision(train: TrainArgs) -> MixedPrecisionPolicy:
    """bf16 parameters with fp32 gradient reduction for train.dtype bf16; fp32 throughout otherwise."""
    if train.dtype == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def apply_fsdp(loss: CausalLMLoss, train: TrainArgs, info: DistInfo) -> None:
    mesh = init_device_mesh(info.device.type, (info.world_size,))
    mp = mixed_precision(train)
    for block in loss.lm.layers:
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=train.reshard_after_forward)
    # The root holds the embedding (tied head), final norm and per-loop gates.
    fully_shard(loss, mesh=mesh, mp_policy=mp, reshard_after_forward=train.reshard_after_forward)


def parallelize(loss: CausalLMLoss, train: TrainArgs, info: DistInfo) -> nn.Module:
    """Apply AC -> compile -> FSDP2 to a materialised CausalLMLoss in place; returns it."""
    if not train.fsdp and info.world_size > 1:
        raise ValueError(f"train.fsdp=false needs a single rank, got {info.world_size} (data parallelism is FSDP)")
    apply_activation_checkpointing(loss.lm, train.activation_checkpointing)
    if train.compile:
        apply_compile(loss.lm, loss, loss.lm.args.loop_count)
    if train.fsdp:
        apply_fsdp(loss, train, info)
    return loss


def autocast(train: TrainArgs, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when the model is not under FSDP mixed precision (fsdp off); a no-op otherwise."""
    if train.dtype == "bf16" and not train.fsdp:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Skip FSDP's reduce-scatter on all but the last micro-step of a gradient-accumulation step."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
