"""Preemption: SIGTERM or SIGUSR1 sets a flag; the loop checkpoints at the next boundary and exits 75.

The signal handler only sets a flag (no I/O inside a handler). The loop polls it at every step boundary,
between validation batches and before the first step, and agrees on it across ranks with one all-reduce
on the host (lt2.train.distributed.control_sum), so that every rank stops at the same step even when only
one of them got the signal. Then all ranks write a synchronous checkpoint and `lt2 train` exits with
EXIT_PREEMPTED = 75 (EX_TEMPFAIL: "try again later"). The next run with the same --dump-dir resumes from
that checkpoint.

SLURM, running `srun lt2 train ...` directly (one task per GPU; srun passes the exit status on):

    #SBATCH --requeue                 # the job may be requeued (by the scheduler on preemption, or below)
    #SBATCH --signal=B:USR1@120       # USR1 to the batch shell 120 s before the time limit
    trap 'kill -USR1 "$pid"' USR1     # forward it to srun, which signals every task
    srun lt2 train RECIPE --dump-dir RUNDIR --out OUTDIR & pid=$!
    wait "$pid"; rc=$?
    while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done   # a trapped signal interrupts `wait`
    if [ "$rc" -eq 75 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
    exit "$rc"

Without `B:` (`--signal=USR1@120`) SLURM signals the job step's tasks directly and no trap is needed.
Scheduler preemption with PreemptMode=REQUEUE sends SIGTERM (GraceTime seconds before SIGKILL) and
requeues by itself; a step must fit in GraceTime for the checkpoint to land. Under Snakemake, give the rule
`retries` (or run with `--retries N`): exit 75 fails the job, and the retry resumes from the dump dir, which
lies outside the rule's declared outputs. torchrun turns any worker's non-zero exit into its own exit 1 and
its agent handles SIGTERM itself, so for requeue-on-preemption launch with srun, not torchrun.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_PREEMPTED = 75  # EX_TEMPFAIL (sysexits.h)
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preemption:
    """Context manager that turns SIGTERM/SIGUSR1 into a flag (`requested`); restores the old handlers on exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested, self.signal = True, signum

    def __enter__(self) -> Preemption:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def flag(self) -> int:
        """1 when this rank got a signal, else 0: summed over ranks by the loop."""
        return int(self.requested)
