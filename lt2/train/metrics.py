"""What a run reports: metrics.jsonl, a progress bar, rank-0 logging, and MFU from analytic FLOPs.

metrics.jsonl (one JSON object per line, written by rank 0 into the run directory):
    training, every log_every steps:  step, loss (mean over ranks and micro-steps), lr, grad_norm,
        tokens (global training tokens consumed = the loader's position), data_fingerprint (sum of the
        48-bit hashes of every row of the step, all ranks), tokens_per_s (all ranks), mfu (null on CPU or
        an unknown GPU), peak_mem_gib (CUDA allocator peak, null on CPU), elapsed_s
    validation, every val_every steps: step, val_loss, val_tokens
On resume, lines past the checkpoint's step are dropped first, so the file reads like one uninterrupted run.

MFU = tokens/s per device * train FLOPs per token / the device's dense peak for the run's dtype. FLOPs per
token come from `lt2.model.costs.model_info` (matmuls * 3 for forward + backward, plus each mixer's own
sequence-mixing FLOPs at the training context); activation-checkpoint recomputation is not counted, as
usual for MFU.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lt2.config import ModelArgs
from lt2.files import atomic_write_text
from lt2.progress import format_duration

logger = logging.getLogger("lt2.train")

# Dense peak FLOP/s (no sparsity) per device family and dtype, from NVIDIA's datasheets. "fp32" is plain
# FP32; with TF32 matmuls allowed, fp32 runs count against the TF32 peak.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "H100 NVL": {"bf16": 835.0e12, "tf32": 417.5e12, "fp32": 60.0e12},
    "H100 PCIe": {"bf16": 756.0e12, "tf32": 378.0e12, "fp32": 51.2e12},
    "H100": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},  # SXM; after the more specific names
    "A100": {"bf16": 312.0e12, "tf32": 156.0e12, "fp32": 19.5e12},
}


def _rank() -> str:
    """This process's rank from the launcher's environment (torchrun / lt2: RANK, srun: SLURM_PROCID)."""
    return os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))


def log0(msg: str, *args: Any, level: int = logging.INFO) -> None:
    """Log from rank 0 only."""
    if _rank() == "0":
        logger.log(level, msg, *args)


def setup_logging() -> None:
    """Log to stderr with the rank in every line: INFO from rank 0, warnings and errors from every rank."""
    rank = _rank()
    level = logging.INFO if rank == "0" else logging.WARNING
    logging.basicConfig(level=level, format=f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s")


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """Dense peak FLOP/s of `device` for the run dtype (bf16 | fp32), or None (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    kind = dtype if dtype == "bf16" else ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32")
    for family, peaks in PEAK_FLOPS.items():
        if family in name:
            return peaks[kind]
    return None


def train_flops_per_token(args: ModelArgs, seq_len: int) -> float:
    """Analytic training FLOPs per token (forward + backward) at context `seq_len`: the one MFU source."""
    from lt2.model.costs import model_info  # builds the model on the meta device: cheap, but call it once

    return model_info(args, seq_len).train_flops_per_token


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def progress_line(step: int, total: int, record: dict[str, Any], eta_s: float | None) -> str:
    """`step 120/600 (20%) | loss 3.8123 | lr 2.50e-03 | grad 0.412 | 2,345 tok/s | ETA 1m12s` for a log."""
    parts = [f"step {step}/{total} ({100 * step / total:.0f}%)", f"loss {record['loss']:.4f}"]
    if record.get("lr") is not None:
        parts.append(f"lr {record['lr']:.2e}")
    if record.get("grad_norm") is not None:
        parts.append(f"grad {record['grad_norm']:.3f}")
    if record.get("tokens_per_s") is not None:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if record.get("mfu") is not None:
        parts.append(f"MFU {100 * record['mfu']:.1f}%")
    parts.append(f"ETA {format_duration(eta_s)}" if eta_s is not None else "ETA ?")
    return " | ".join(parts)


class MetricsWriter:
    """metrics.jsonl (rank 0) plus progress: a tqdm bar on a terminal, otherwise (Snakemake, SLURM: no
    terminal) one log line per training record with step/total, loss, tokens/s and an ETA, so a job's log
    shows how far it is. Every rank may call; only rank 0 writes."""

    def __init__(self, path: Path, rank: int, total_steps: int, start_step: int):
        self.path, self.rank = Path(path), rank
        self.total, self.start_step = total_steps, start_step
        self.t0 = time.perf_counter()  # the ETA extrapolates from this session's steps (resumes included)
        self.bar = None
        if rank == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            truncate_metrics(self.path, start_step)
            if sys.stderr.isatty():
                from tqdm import tqdm

                self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if "loss" not in record:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        else:
            logger.info(progress_line(record["step"], self.total, record, self.eta(record["step"])))

    def eta(self, step: int) -> float | None:
        """Seconds from `step` to the last step at this session's mean speed (None before the first step)."""
        done = step - self.start_step
        if done <= 0:
            return None
        return (time.perf_counter() - self.t0) / done * (self.total - step)

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records past `step` (written after the checkpoint a run resumes from); atomic rewrite."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError):
            continue  # a line cut short by a kill
    if len(keep) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in keep))


class Throughput:
    """Tokens/s and MFU over the window since the last report (time spent checkpointing is excluded)."""

    def __init__(self, flops_per_token: float, peak: float | None, world_size: int):
        self.flops_per_token, self.peak, self.world_size = flops_per_token, peak, world_size
        self.reset()

    def reset(self) -> None:
        self.t0, self.tokens = time.perf_counter(), 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def report(self) -> dict[str, float | None]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        tps = self.tokens / dt
        mfu = tps / self.world_size * self.flops_per_token / self.peak if self.peak else None
        self.reset()
        return {"tokens_per_s": tps, "mfu": mfu}
