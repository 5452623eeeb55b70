"""`lt2 verify-kernels`' comparison harness on the CPU, where the fast path and the bf16 reference are the same
code: every error equals its bf16 floor (both vs fp64), so forward, backward, decode and compile pass;
an engine that cannot run here (a CUDA graph) is a failed row, not an aborted case. The tolerance rule
itself: FACTOR times the floor, never below FACTOR * MIN_FLOOR; a row fails on a larger or non-finite
error, and the backward row names the parameter of the worst ratio.

The real comparison needs CUDA: `lt2 verify-kernels` on a GPU node (`scripts/gpu_check.sh`).

Run: pytest tests/bench/test_verify_harness.py
"""

from __future__ import annotations

import math

import pytest
import torch

from lt2.bench.verify import (
    ALONE,
    CASES,
    FACTOR,
    LONGEST_FIRST,
    MIN_FLOOR,
    Check,
    case_args,
    check_cases,
    rows,
    tolerance,
    verify_case,
    worst_gradient,
)
from lt2.testing import tiny_args, tiny_model


def test_cpu_case_reports_every_check():
    checks = {c.check: c for c in verify_case("interleave:1:1:gdn:full", tiny_args("interleave:1:1:gdn:full"),
                                              batch=1, seq_len=24, device=torch.device("cpu"), steps=6)}  # fmt: skip
    assert list(checks) == ["forward", "backward", "decode", "graph", "compile"]
    for name in ("forward", "backward"):  # the same code at the same precision: error == floor exactly
        assert checks[name].ok and checks[name].rel_rms == checks[name].floor > 0, checks[name]
    for name in ("decode", "compile"):  # decoding rounds differently from the forward, but within the factor
        assert checks[name].ok and 0 < checks[name].rel_rms <= checks[name].tolerance, checks[name]
    assert checks["backward"].worst
    assert not checks["graph"].ok and math.isinf(checks["graph"].rel_rms)
    assert "cuda_graph=True needs the model on a CUDA device" in checks["graph"].problem
    table = rows(list(checks.values()))
    assert {"rel_rms", "floor", "tolerance", "factor", "ok"} <= set(table[0])


def test_tolerance_is_a_factor_of_the_floor_never_below_bf16_storage():
    assert tolerance(1e-2) == FACTOR * 1e-2
    assert tolerance(0.0) == tolerance(1e-9) == FACTOR * MIN_FLOOR
    assert Check("p", "forward", 1.9e-2, 1e-2, 0.1).ok
    assert not Check("p", "forward", 2.1e-2, 1e-2, 0.1).ok
    assert not Check("p", "forward", math.nan, 1e-2, 0.1).ok
    assert not Check.failed("p", "graph", "no GPU").ok
    assert not Check("p", "compile", 1e-2, 1e-2, 0.1, problem="3 compiled graphs").ok  # numbers kept, row fails


def test_backward_row_is_the_parameter_with_the_worst_ratio():
    models = [tiny_model("full", 1, n_layers=1).double() for _ in range(3)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    tokens = torch.randint(0, 97, (1, 8))
    for m in models:
        m(tokens).square().mean().backward()
    fast, ref16, ref64 = models
    name = "embed.weight"
    dict(ref16.named_parameters())[name].grad.mul_(1 + 1e-2)  # floor 1e-2 for this one
    dict(fast.named_parameters())[name].grad.mul_(1 + 3e-2)  # 1.5x its tolerance
    row = worst_gradient("full", fast, ref16, ref64)
    assert row.worst == name and not row.ok and row.rel_rms == pytest.approx(3e-2, rel=1e-6)


def test_unknown_case_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown case\(s\) \['gdnn'\]; valid: full, window"):
        check_cases(["gdnn"])


def test_scheduling_lists_name_only_real_cases():
    # a misspelt entry would silently lose its place (and a DSA case run beside others, out of memory)
    for names in (ALONE, LONGEST_FIRST):
        assert set(names) <= set(CASES) and len(set(names)) == len(names)
    assert not set(ALONE) & set(LONGEST_FIRST)


@pytest.mark.parametrize("pattern", ["dsa", "interleave:1:1:gdn:dsa"])
def test_dsa_cases_select_fewer_keys_than_the_sequence_has(pattern):
    # at top-k >= T every query would keep every key, and the selection would go unchecked
    args = case_args(pattern, "config/recipes", 2048)
    assert args.dsa.topk == 512 and args.n_layers == 2 and args.max_seqlen == 2048
