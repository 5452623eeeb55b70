"""Progress a person can follow in a job's log: a tqdm bar on a terminal, otherwise (Snakemake, SLURM) one
log line at most every `every_s` seconds with count/total, rate and ETA, plus a last line when done.

    with Progress("shuffle: read", total=None, unit="doc") as bar:
        for line in lines:
            ...
            bar.update()
"""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger("lt2.progress")


def format_duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s: short enough for a progress line."""
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Counts units of work; tqdm where stderr is a terminal, periodic log lines otherwise."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", initial: int = 0, every_s: float = 30.0):
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.count = self.start_count = initial
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True)

    def line(self) -> str:
        """`shuffle: read 12,000/50,000 doc (24%) | 3,100 doc/s | ETA 12s` (no total: no % and no ETA)."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (self.count - self.start_count) / elapsed
        done = f"{self.count:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"
        parts = [f"{self.desc} {done}" + (f" ({100 * self.count / self.total:.0f}%)" if self.total else "")]
        parts.append(f"{rate:,.0f} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {format_duration((self.total - self.count) / rate)}")
        else:
            parts.append(f"elapsed {format_duration(elapsed)}")
        return " | ".join(parts)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.perf_counter() - self.last >= self.every_s:
            self.last = time.perf_counter()
            logger.info(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            logger.info(self.line() + " | done")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
