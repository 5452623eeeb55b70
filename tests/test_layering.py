"""Import layering: the lower layers of the package import nothing above them.

    kernels  imports none of  lt2.infer, lt2.bench, lt2.train, lt2.cli
    model    imports none of  lt2.train, lt2.bench, lt2.report
    config   imports none of  the stages and what composes them (lt2.recipe, lt2.data, lt2.train, ...):
             each stage's settings live beside it and lt2.recipe composes them above config

Every import statement counts, also those inside functions (a lazy import is still a dependency).

pytest tests/test_layering.py
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "lt2"
FORBIDDEN = {
    "kernels": ("lt2.infer", "lt2.bench", "lt2.train", "lt2.cli"),
    "model": ("lt2.train", "lt2.bench", "lt2.report"),
    # lt2/config.py: ModelArgs and resolve(). Its one lt2 import, lt2.model.pattern (inside ModelArgs.layout),
    # is the model's own grammar.
    "config": (
        "lt2.recipe",
        "lt2.data",
        "lt2.train",
        "lt2.infer",
        "lt2.eval",
        "lt2.bench",
        "lt2.distill",
        "lt2.synth",
        "lt2.report",
        "lt2.cli",
    ),
}


def imported(path: Path) -> list[str]:
    """Every module an import statement of `path` names."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{file.relative_to(PACKAGE.parent)} imports {name}"
        for file in files
        for name in imported(file)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    folder = PACKAGE / layer
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{layer}.py"]
    assert files
    assert violations(files, FORBIDDEN[layer]) == []
