"""Choose, in one place, between the CUDA fast paths and the pure-PyTorch references.

Fast paths are used automatically for CUDA tensors when their library imports; `reference()` forces
the pure-PyTorch twin (the numerical oracle) for a block of code, e.g. in GPU equivalence tests.
`LT2_BACKEND=reference` does the same for a whole process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator

import torch

_force_reference = os.environ.get("LT2_BACKEND", "auto") == "reference"


@functools.cache
def has_fla() -> bool:
    return importlib.util.find_spec("fla") is not None


@functools.cache
def has_flash_attn() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


@functools.cache
def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


# Filled on first use, outside compiled code where possible (see load_fast_paths): torch.compile reads a
# plain dict as a constant, but tracing the find_spec calls behind has_* breaks the graph at every mixer.
_available: dict[str, bool] = {}


def _has(needs: str) -> bool:
    if needs not in _available:
        _available.update(torch=True, fla=has_fla(), flash_attn=has_flash_attn(), triton=has_triton())
    return _available[needs]


def use_fast(x: torch.Tensor, needs: str = "torch") -> bool:
    """True when `x` lives on CUDA, references are not forced, and library `needs` is installed."""
    if _force_reference or not x.is_cuda:
        return False
    return _has(needs)


def load_fast_paths() -> None:
    """Resolve, before torch.compile traces a model, what the fast paths look up lazily.

    The library checks, and the Triton kernels' modules when triton is installed: both are lazy so that
    CPU-only installs import quickly and without triton, and both would otherwise be resolved inside the
    first traced call, where importing breaks the graph.
    """
    _has("torch")
    if has_triton():
        from lt2.kernels import decode_attention, dsa, gdn_decode

        for package in (decode_attention, dsa, gdn_decode):
            for name in package._TRITON:
                getattr(package, name)


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Run the enclosed code on the pure-PyTorch references, whatever the device."""
    global _force_reference
    previous, _force_reference = _force_reference, True
    try:
        yield
    finally:
        _force_reference = previous
