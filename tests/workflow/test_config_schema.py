"""The run configuration is validated against workflow/schemas/config.schema.yaml before any job runs.

pytest tests/workflow/test_config_schema.py
"""

from __future__ import annotations

import pytest
from workflow_helpers import snakemake


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("bogus_key=1", "bogus_key"),  # unknown top-level key
        ("shuffle={'nchunks': 0, 'seed': 1, 'val_docs': 4, 'memory_mb': 64}", "nchunks"),  # out of range
        ("tokenizer={'kind': 'sentencepiece'}", "sentencepiece"),  # not one of the choices
        ("eval={'ppl': {'stride': 'wide'}}", "stride"),  # wrong type
    ],
    ids=["unknown-key", "nchunks-0", "tokenizer-kind", "stride-type"],
)
def test_bad_config_fails_before_any_job_naming_it(workflow, override, named):
    res = snakemake(workflow, "--cores", "1", "all", "--config", override, check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert named in out, out[-3000:]
    assert "Error validating config" in out or "ValidationError" in out, out[-3000:]
    # nothing ran: no job wrote data, results or logs
    for folder in ("data", "results", "logs", "runs"):
        assert not (workflow / folder).exists(), f"{folder}/ was created although the config is invalid"


def test_config_cross_checks_name_the_bad_value(workflow):
    res = snakemake(workflow, "-n", "all", "--config", "corpus={'tiny': 'wikitext'}", check=False)
    assert res.returncode != 0
    assert "wikitext" in res.stdout + res.stderr


def test_default_config_is_valid(workflow):
    """The test overlay on config/config.yaml plans the whole tiny DAG."""
    res = snakemake(workflow, "-n", "all")
    for rule in ("download", "shuffle", "tokenizer", "train", "model_info", "eval_ppl", "table"):
        assert f"{rule} " in res.stdout, res.stdout[-3000:]
