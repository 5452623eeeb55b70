"""Defaults agree: the workflow schema's defaults, the embedded default config (config/config.yaml) and the
defaults of the `lt2` commands the rules call.

pytest tests/test_defaults.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lt2.cli import build_parser

REPO = Path(__file__).parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

# the command lines the rules call, with their required arguments
SHUFFLE = "data shuffle --input i --out o --dataset d --nchunks 1 --seed 0"
PPL = "eval ppl m --data d --tokenizer t --out o"
ZEROSHOT = "eval zeroshot m --out o"
THROUGHPUT = "bench throughput r.yaml --out o.csv"
TRAIN = "bench train r.yaml"
# schema key -> (command line, destination of the flag the rule passes it to)
FLAGS = {
    "shuffle.memory_mb": (SHUFFLE, "memory_mb"),
    "shuffle.val_docs": (SHUFFLE, "val_docs"),
    "eval.ppl.batch_size": (PPL, "batch_size"),
    "eval.ppl.seq_len": (PPL, "seq_len"),
    "eval.ppl.stride": (PPL, "stride"),
    "eval.zeroshot.batch_size": (ZEROSHOT, "batch_size"),
    "eval.zeroshot.data": (ZEROSHOT, "data"),
    "bench.throughput.batch": (THROUGHPUT, "batch"),
    "bench.throughput.ctx": (THROUGHPUT, "ctx"),
    "bench.throughput.decode_steps": (THROUGHPUT, "decode_steps"),
    "bench.train.steps": (TRAIN, "steps"),
    "bench.train.warmup": (TRAIN, "warmup"),
}


def schema_defaults(node: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> default of every scalar or list setting the schema gives a default."""
    found = {}
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" or "properties" in sub:
            found |= schema_defaults(sub, f"{prefix}{key}.")
        elif "default" in sub:
            found[prefix + key] = sub["default"]
    return found


def lookup(config: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(config, dict) or key not in config:
            return KeyError
        config = config[key]
    return config


DEFAULTS = schema_defaults(SCHEMA)


@pytest.mark.parametrize("key", sorted(k for k in DEFAULTS if lookup(CONFIG, k) is not KeyError))
def test_default_config_sets_what_the_schema_defaults_to(key):
    assert lookup(CONFIG, key) == DEFAULTS[key]


@pytest.mark.parametrize("key", list(FLAGS))
def test_command_defaults_are_the_schema_defaults(key):
    argv, dest = FLAGS[key]
    value = getattr(build_parser().parse_args(argv.split()), dest)
    assert value == DEFAULTS[key], (
        f"lt2 {argv.split()[0]} ... {dest} defaults to {value!r}, the schema to {DEFAULTS[key]!r}"
    )
