"""Progress lines for logs without a terminal (Snakemake, SLURM): training prints step/total, loss, tokens/s and
an ETA every log_every steps; long data jobs print count, rate and ETA at most every few seconds.

Run: pytest tests/train/test_progress.py
"""

from __future__ import annotations

import logging

from lt2.progress import Progress, format_duration
from lt2.train.metrics import MetricsWriter, progress_line


def test_format_duration():
    assert [format_duration(s) for s in (0, 42, 185, 3720, 90061)] == ["0s", "42s", "3m05s", "1h02m", "25h01m"]


def test_training_progress_line_names_what_a_person_watches():
    record = {"step": 120, "loss": 3.81234, "lr": 2.5e-3, "grad_norm": 0.41, "tokens_per_s": 2345.6, "mfu": None}
    line = progress_line(120, 600, record, eta_s=72)
    assert line == "step 120/600 (20%) | loss 3.8123 | lr 2.50e-03 | grad 0.410 | 2,346 tok/s | ETA 1m12s"
    assert progress_line(1, 10, {"loss": 5.0}, None).endswith("ETA ?")


def test_metrics_writer_logs_each_training_record_without_a_terminal(tmp_path, caplog):
    writer = MetricsWriter(tmp_path / "metrics.jsonl", rank=0, total_steps=40, start_step=20)  # a resumed run
    assert writer.bar is None  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="lt2.train"):
        writer.advance(10)
        writer.write({"step": 30, "loss": 4.0, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1000.0})
        writer.write({"step": 30, "val_loss": 4.1, "val_tokens": 100})  # validation: no progress line
    lines = [r.getMessage() for r in caplog.records if r.name == "lt2.train"]
    assert len(lines) == 1 and lines[0].startswith("step 30/40 (75%) | loss 4.0000") and "ETA" in lines[0]
    assert writer.eta(30) is not None and writer.eta(20) is None
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_data_progress_logs_rate_and_eta(caplog):
    with (
        caplog.at_level(logging.INFO, logger="lt2.progress"),
        Progress("shuffle x: write", total=10, unit="doc", every_s=0.0) as bar,
    ):
        for _ in range(10):
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("shuffle x: write 1/10 doc (10%)") and "doc/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("shuffle x: write 10/10 doc (100%)") and lines[-1].endswith("done")
