"""`lt2 synth run`: one curriculum run of one arm at one loop count, written with its provenance.

    lt2 synth run CONFIG [dot.overrides ...] --arm gdn_window --loop-count 8 --dump-dir RUNDIR --out RECORD.json

RUNDIR holds the checkpoints a rerun resumes from; RECORD.json appears when the curriculum ends. Exit
status: 0 done, 2 bad configuration, 75 preempted (checkpoint written: run the same command again).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from lt2.report import provenance
from lt2.synth.arms import get_arm
from lt2.synth.curriculum import Curriculum, load_synth_args, run_config
from lt2.train.preemption import EXIT_PREEMPTED, Preemption


def run_synthetic(
    config_path: str, overrides: list[str], arm: str, loop_count: int, dump_dir: str | Path, out: str | Path
) -> int:
    """Run (or resume) the curriculum of `arm` at `loop_count`; write the record to `out`. Returns the exit status."""
    get_arm(arm)  # bad names fail before anything is built
    args = load_synth_args(config_path, overrides)
    config = run_config(args, arm, loop_count)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(out)
    with provenance.record([out], inputs=[config_path], config=config) as rec:
        if args.train.threads:
            torch.set_num_threads(args.train.threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with Preemption() as preemption:
            curriculum = Curriculum(args, arm, loop_count, dump_dir, device)
            result = curriculum.run(preemption)
        if result.status == "preempted":
            rec.outputs = []  # nothing written: no sidecar
            logging.getLogger(__name__).warning("preempted: checkpoint in %s; run again to resume", dump_dir)
            return EXIT_PREEMPTED
        rec.extra["device"] = str(device)
        out.parent.mkdir(parents=True, exist_ok=True)
        provenance.atomic_write_text(out, json.dumps(result.record, indent=1) + "\n")
    print(f"{arm} loop_count={loop_count}: n_max = {result.record['n_max']} ({result.record['total_steps']} steps)")
    return 0
