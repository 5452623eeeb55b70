"""Run another `lt2` command and give each of its outputs a provenance sidecar.

Workflow rules call commands that other parts of the package own (`lt2 data ...`, `lt2 train ...`,
`lt2 model-info ...`). The rule knows exactly which files go in and come out, so the rule names them once
and this wrapper records them, instead of every command re-implementing provenance:

    lt2 record --input recipe.yaml --output info.json --stdout info.json -- model-info recipe.yaml --json

Under `torchrun` (multi-GPU training) every rank runs the wrapper and only rank 0 records.
A command that records its own provenance (through `lt2.report.provenance.record`) keeps its richer record:
a sidecar written after the wrapper started is left as it is.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from lt2.report import provenance


def run_recorded(
    command: list[str],
    inputs: list[str],
    outputs: list[str],
    config: Any = None,
    stdout: str | None = None,
) -> int:
    """Run `lt2 <command>` in this process; on success write a sidecar for every output.

    stdout: capture the command's standard output into this file (written atomically), for commands that
    print their result. Returns the command's exit status; no sidecar is written when it is not 0.
    """
    from lt2.cli import main  # the CLI imports this module lazily

    if not command:
        raise ValueError("lt2 record: no command given after '--'")
    if stdout is not None and stdout not in outputs:
        raise ValueError(f"--stdout {stdout} must also be one of the --output files {outputs}")
    if int(os.environ.get("RANK", "0")) != 0:
        # under torchrun every rank runs this wrapper; rank 0 writes the outputs, so it alone records them
        return main(command)
    with provenance.record(outputs, inputs=inputs, config=config, command=["lt2", *command]) as rec:
        if stdout is None:
            status = main(command)
        else:
            buffer = io.StringIO()
            with redirect_stdout(buffer):
                status = main(command)
            if status == 0:
                provenance.atomic_write_text(stdout, buffer.getvalue())
        if status != 0:
            rec.outputs = []  # a failed command's files describe nothing
            return status
        missing = [out for out in outputs if not Path(out).exists()]
        if missing:
            raise ValueError(f"lt2 {command[0]} exited 0 but did not write {', '.join(missing)}")
        # Leave sidecars the command wrote itself: they were made with more knowledge than ours.
        rec.outputs = [Path(out) for out in outputs if not provenance.sidecar(out).exists()]
    return 0


def parse_config(text: str | None) -> Any:
    """`--config` is JSON (what workflow helpers pass) or a path to a YAML/JSON file."""
    if text is None:
        return None
    path = Path(text)
    if path.suffix in {".yaml", ".yml", ".json"} and path.is_file():
        import yaml

        return yaml.safe_load(path.read_text())
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config is neither JSON nor an existing YAML/JSON file: {err}") from None
