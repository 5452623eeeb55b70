"""`interpreted`: run a check in a worker process where Triton's interpreter is on (TRITON_INTERPRET=1).

Triton decides at import time whether @triton.jit gives compiled or interpreted kernels (even tl.zeros is a
jit function), so the variable must be set before triton is first imported, and it holds for the whole
process. Setting it in this process would leak into every other test module of the session (GPU tests
collected alongside would run interpreted). Instead, one spawned worker per session imports triton with the
variable set; tests send it a module-level check function (pickled by reference, so the worker imports the
test module) and get its return value or its exception back, with the test's own id and report.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def interpreted() -> Iterator[Callable[..., Any]]:
    """`interpreted(fn, *args, **kwargs)` runs fn in the TRITON_INTERPRET=1 worker and returns its result."""
    pytest.importorskip("triton", reason="the kernel checks need triton (pip install lt2[triton])")
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:  # the spawned worker inherits the environment as it is now
        pool = multiprocessing.get_context("spawn").Pool(processes=1)
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous
    with pool:
        assert pool.apply(os.getenv, ("TRITON_INTERPRET",)) == "1"  # os.getenv pickles by reference
        yield lambda fn, *args, **kwargs: pool.apply(fn, args, kwargs)
