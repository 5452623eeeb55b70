"""The kernel packages load their Triton modules on first use and keep the loaded names as plain attributes
(what torch.compile needs to trace them without a graph break); an unknown name is an AttributeError.

Run: pytest tests/kernels/test_lazy_attributes.py
"""

from __future__ import annotations

import types

import pytest

from lt2.kernels.common import lazy_attributes


def test_a_lazy_name_is_imported_once_and_kept_in_the_namespace():
    package = types.ModuleType("pkg")
    package.__getattr__ = lazy_attributes(vars(package), "json", ("dumps",))
    import json

    assert "dumps" not in vars(package)
    assert package.dumps is json.dumps and vars(package)["dumps"] is json.dumps
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'loads'"):
        package.loads  # noqa: B018 (not listed: not loaded)
