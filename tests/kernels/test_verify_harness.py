"""`lt2 verify-kernels`' comparison harness, run on the CPU where fast path and reference are the same code
(bf16 vs fp32): the forward, decode and compile checks must come out at bf16 rounding level, and an engine
that cannot run (a CUDA graph on the CPU) must be reported as a failed check rather than abort the case.

The real comparison needs CUDA: `lt2 verify-kernels --out results/numerics/...` on a GPU node.

Run: pytest tests/kernels/test_verify_harness.py
"""

from __future__ import annotations

import math

import torch

from lt2.kernels.verify import TOLERANCE, verify_case
from lt2.testing import tiny_args


def test_cpu_case_reports_every_check():
    checks = {c.check: c for c in verify_case("interleave:1:1:gdn:full", tiny_args("interleave:1:1:gdn:full"),
                                              batch=1, seq_len=24, device=torch.device("cpu"))}  # fmt: skip
    assert set(checks) == {"forward", "backward", "decode", "graph", "compile"}
    for name in ("forward", "decode", "compile"):
        assert checks[name].ok and checks[name].rel_rms < TOLERANCE[name], checks[name]
    # bf16 autograd through the reference (no fp32 accumulation inside, unlike the kernels) vs fp32: finite,
    # and the worst parameter is named
    assert math.isfinite(checks["backward"].rel_rms) and checks["backward"].worst
    assert not checks["graph"].ok and math.isinf(checks["graph"].rel_rms)
    assert "cuda_graph=True needs the model on a CUDA device" in checks["graph"].worst
