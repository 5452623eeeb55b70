"""Provenance records and `lt2 audit` on a small hand-made chain (raw -> derived -> table), no workflow.

pytest tests/report/test_provenance.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lt2.report import provenance
from lt2.report.audit import audit


@pytest.fixture
def chain(tmp_path: Path, monkeypatch) -> Path:
    """source.txt (no record) -> results/derived.txt -> results/table.md, each derived file recorded."""
    monkeypatch.chdir(tmp_path)
    Path("source.txt").write_text("facts\n")
    Path("results").mkdir()
    with provenance.record(["results/derived.txt"], inputs=["source.txt"], config={"k": 1}):
        provenance.atomic_write_text("results/derived.txt", "derived\n")
    with provenance.record(["results/table.md"], inputs=["results/derived.txt"], config={"table": "t"}) as rec:
        provenance.atomic_write_text("results/table.md", "| a |\n")
        rec.extra["rows"] = 1
    return tmp_path


def test_record_holds_the_contract(chain):
    rec = json.loads(Path("results/table.md.prov.json").read_text())
    assert rec["output"] == {"path": "results/table.md", "sha256": provenance.sha256_file("results/table.md")}
    assert rec["inputs"] == [
        {
            "path": "results/derived.txt",
            "sha256": provenance.sha256_file("results/derived.txt"),
            "kind": "file",
            "has_provenance": True,
        }
    ]
    assert rec["config"] == {"table": "t"} and rec["config_sha256"] == provenance.config_sha256({"table": "t"})
    assert rec["extra"] == {"rows": 1}
    assert set(rec["packages"]) >= {"torch", "triton", "lm_eval", "snakemake"}
    assert rec["hardware"]["cpu_count"] == os.cpu_count()
    assert rec["started"] <= rec["ended"]
    assert {"commit", "dirty", "diff_sha256"} <= set(rec["git"])


def test_config_hash_ignores_key_order():
    assert provenance.config_sha256({"a": 1, "b": [1, 2]}) == provenance.config_sha256({"b": [1, 2], "a": 1})
    assert provenance.config_sha256({"a": 1}) != provenance.config_sha256({"a": 2})


def test_failed_body_writes_no_record_and_drops_a_stale_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with provenance.record(["out.txt"]):
        Path("out.txt").write_text("old")
    assert provenance.sidecar("out.txt").exists()
    with pytest.raises(RuntimeError), provenance.record(["out.txt"]):
        Path("out.txt").write_text("half")
        raise RuntimeError("killed")
    assert not provenance.sidecar("out.txt").exists()


def test_directory_hash_ignores_sidecars_and_snakemake_marker(tmp_path):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "a.json").write_text("{}")
    before = provenance.sha256_path(d)
    (d / "a.json.prov.json").write_text("{}")
    (d / ".snakemake_timestamp").write_text("")
    assert provenance.sha256_path(d) == before
    (d / "b.json").write_text("{}")
    assert provenance.sha256_path(d) != before


def test_audit_passes_then_names_the_changed_file(chain):
    report = audit("results/table.md")
    assert report.ok, report.format()
    assert [n.path for n in report.nodes] == ["results/table.md", "results/derived.txt", "source.txt"]
    Path("source.txt").write_text("other facts\n")
    report = audit("results/table.md")
    assert not report.ok
    assert report.first_problem.path == "source.txt" and report.first_problem.what == "tampered"


def test_audit_catches_an_edited_output_and_a_lost_record(chain):
    Path("results/table.md").write_text("| b |\n")
    assert audit("results/table.md").first_problem.path == "results/table.md"
    Path("results/table.md").write_text("| a |\n")
    provenance.sidecar("results/derived.txt").unlink()
    problem = audit("results/table.md").first_problem
    assert (problem.path, problem.what) == ("results/derived.txt", "no provenance")


def test_audit_lists_an_absent_input_from_outside_the_repository_and_checks_a_present_one(tmp_path, monkeypatch):
    """A GPU machine's unpacked data outside the tree cannot be here: listed as external, not a problem;
    the same input present here is hashed like any other (so it still catches a changed file)."""
    repo, outside = tmp_path / "repo", tmp_path / "unpacked"
    repo.mkdir(), outside.mkdir()
    (outside / "tokenizer.json").write_text("{}\n")
    monkeypatch.chdir(repo)
    Path("results").mkdir()
    with provenance.record(["results/bench.json"], inputs=[str(outside / "tokenizer.json")], config={}):
        provenance.atomic_write_text("results/bench.json", "{}\n")
    (outside / "tokenizer.json").write_text('{"changed": 1}\n')
    problem = audit("results/bench.json").first_problem
    assert (problem.path, problem.what) == ("../unpacked/tokenizer.json", "tampered")
    (outside / "tokenizer.json").unlink()
    report = audit("results/bench.json")
    assert report.ok, report.format()
    assert [n.external is not None for n in report.nodes] == [False, True]
    assert "1 external input(s) not checked here" in report.format()
    Path("gone.txt").write_text("x\n")  # an input inside the repository that disappears is still a problem
    with provenance.record(["results/other.json"], inputs=["gone.txt"], config={}):
        provenance.atomic_write_text("results/other.json", "{}\n")
    Path("gone.txt").unlink()
    assert audit("results/other.json").first_problem.what == "missing"


def test_model_info_records_its_output_and_only_on_success(tmp_path, monkeypatch):
    """`lt2 model-info --out` writes the JSON it prints, with the resolved recipe as the sidecar's config."""
    from lt2.cli import main

    recipe = Path(__file__).parents[2] / "config" / "recipes" / "tiny" / "looped_pure_full.yaml"
    monkeypatch.chdir(tmp_path)
    assert main(["model-info", str(recipe), "--json", "--out", "info.json"]) == 0
    assert json.loads(Path("info.json").read_text())["effective_depth"] == 30  # 15 layers x 2 loops
    rec = json.loads(Path("info.json.prov.json").read_text())
    assert rec["config"]["recipe"]["model"]["loop_count"] == 2 and rec["config"]["seq_len"] > 0
    assert [Path(i["path"]).name for i in rec["inputs"]] == ["_base.yaml", "looped_pure_full.yaml"]
    assert main(["model-info", "missing.yaml", "--json", "--out", "bad.json"]) == 2
    assert not Path("bad.json").exists() and not Path("bad.json.prov.json").exists()


def test_a_tree_without_git_records_the_declared_commit(tmp_path, monkeypatch):
    """A GPU node gets the working tree without .git: $LT2_GIT_COMMIT names the commit it came from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path either
    monkeypatch.delenv("LT2_GIT_COMMIT", raising=False)
    assert provenance.git_state() == {"commit": None, "dirty": None, "diff_sha256": None, "source": None}
    monkeypatch.setenv("LT2_GIT_COMMIT", "4f9a579")
    assert provenance.git_state() == {"commit": "4f9a579", "dirty": None, "diff_sha256": None, "source": "env"}


def test_a_repository_records_its_own_head(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LT2_GIT_COMMIT", "not-this-one")  # git's answer wins where there is a repository
    subprocess.run(["git", "init", "-q"], check=True)
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *identity, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    state = provenance.git_state()
    assert state["commit"] == head and state["source"] == "git" and state["dirty"] is False
