"""`lt2 train --nproc-per-node N`: one worker process per GPU of this node, with the preemption contract kept.

torchrun would start the workers too, but its agent turns a worker's exit 75 (preempted, checkpoint written)
into its own exit 1, handles SIGTERM itself and dies on SIGUSR1, so a SLURM job or Snakemake retry could not
tell a preemption from a crash. This launcher is the minimum instead: it starts N copies of the same command
with RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set (one node, loopback rendezvous), forwards
SIGTERM, SIGUSR1 and SIGINT to every worker (they agree on the stop, checkpoint and exit 75), and exits with:
0 when all succeeded, 75 when the run was preempted, else the first failure's status (a worker that fails
leaves the others blocked in a collective, so they are terminated after a grace period).

Multi-node runs use srun (lt2.train.distributed reads the SLURM variables) or torchrun.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from lt2.train.preemption import EXIT_PREEMPTED

logger = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
GRACE_S = 60  # how long the others may take to notice a failed worker before they are terminated


def resolve_nproc(value: str) -> int:
    """`auto` -> the visible CUDA devices (1 without CUDA); else a positive integer."""
    if value == "auto":
        import torch

        return max(1, torch.cuda.device_count())
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--nproc-per-node must be a positive integer or 'auto', got {value!r}")
    return int(value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_workers(argv: list[str], nproc: int) -> int:
    """Run `python -m lt2.cli *argv` as `nproc` ranks of one job on this node; returns the job's exit status."""
    base = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1"}
    base["MASTER_PORT"] = os.environ.get("MASTER_PORT", str(_free_port()))
    procs = [
        subprocess.Popen([sys.executable, "-m", "lt2.cli", *argv], env={**base, "RANK": str(r), "LOCAL_RANK": str(r)})
        for r in range(nproc)
    ]

    def forward(signum, frame) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    first_failure, failed_at = None, None
    try:
        while any(p.poll() is None for p in procs):
            failure = _failure(procs)
            if failure is not None and failed_at is None:
                first_failure, failed_at = failure.returncode, time.monotonic()
                logger.error("rank %d exited with %d", procs.index(failure), failure.returncode)
            if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
                forward(signal.SIGKILL, None)
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if first_failure is None and (failure := _failure(procs)) is not None:
        first_failure = failure.returncode
    if first_failure is not None:
        return first_failure if first_failure > 0 else 128 - first_failure  # killed by signal n: 128 + n
    return EXIT_PREEMPTED if any(p.returncode == EXIT_PREEMPTED for p in procs) else 0


def _failure(procs: list[subprocess.Popen]) -> subprocess.Popen | None:
    """The first worker that ended with neither success nor preemption."""
    return next((p for p in procs if p.returncode not in (None, 0, EXIT_PREEMPTED)), None)
