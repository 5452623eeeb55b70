"""The tiny DAG end to end (download -> ... -> tables, figures) with the local profile, then its provenance.

Checks that every file under results/ and figures/ has a record matching its bytes, that `lt2 audit`
passes on the finished tables and fails, naming the file, once one intermediate is changed, and that a
rerun has nothing to do. Minutes on a laptop CPU:

    pytest -m slow tests/workflow/test_tiny_dag.py
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from workflow_helpers import command_available, copy_workflow, lt2, snakemake

from lt2.report import provenance

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not command_available("train"), reason="`lt2 train` is not available in this checkout"),
]

RECIPES = ("looped_hybrid_gdn_4to1", "looped_pure_full")
FINAL = [
    "results/test/tables/distill.md",
    "results/test/tables/lm.md",
    "results/test/tables/ablation_gate.md",
    "results/test/tables/model_size.md",
    "figures/test/training_curve.png",
    "results/test/tables/long_context.md",
    "figures/test/niah_context.png",
    "results/test/tables/synthetic.md",
    "figures/test/synthetic_heatmap.png",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("tiny") / "wf")
    snakemake(wf, "--profile", "profiles/local", "all", timeout=1500)
    return wf


def test_tiny_dag_produces_every_output(tiny_run):
    for ext in ("md", "csv", "tex"):
        for table in ("lm", "model_size"):
            assert (tiny_run / f"results/test/tables/{table}.{ext}").is_file()
    for ext in ("png", "pdf"):
        for figure in ("training_curve", "grad_norm", "mixer_costs"):
            assert (tiny_run / f"figures/test/{figure}.{ext}").stat().st_size > 1000
    synth = json.loads((tiny_run / "results/test/synthetic/transformer/T1.json").read_text())
    assert synth["stages"][0]["steps"] == 4 and len(synth["stages"][0]["evals"]) == 2, synth  # 4 steps cannot pass
    assert (tiny_run / "figures/test/synthetic_heatmap.png").stat().st_size > 1000
    lm = (tiny_run / "results/test/tables/lm.csv").read_text().splitlines()
    assert lm[0].split(",")[:3] == ["recipe", "scale", "train tokens"]
    assert sorted(line.split(",")[0] for line in lm[1:]) == sorted([*RECIPES, "bigram_baseline"])
    assert not [c for c in lm[0].split(",") if c.startswith("paper")]  # tiny rows: no paper columns
    for recipe in RECIPES:
        res = json.loads((tiny_run / f"results/test/eval/ppl/tiny/{recipe}.json").read_text())
        assert math.isclose(res["ppl"], math.exp(res["nll"])) and res["seq_len"] == 128
        # same file, packing and window as the trainer's last validation (on fewer tokens): close agreement
        metrics = (tiny_run / f"results/test/train/tiny/{recipe}/metrics.jsonl").read_text().splitlines()
        val_loss = [json.loads(line)["val_loss"] for line in metrics if "val_loss" in line][-1]
        assert abs(res["nll"] - val_loss) < 0.1, (res["nll"], val_loss)
        zs = json.loads((tiny_run / f"results/test/eval/zeroshot/tiny/{recipe}.json").read_text())
        assert len(zs["tasks"]) == 10 and all(t["documents"] == 10 for t in zs["tasks"].values())
    assert "avg acc" in lm[0].split(",")
    gate = (tiny_run / "results/test/tables/ablation_gate.csv").read_text()
    assert gate.count(",not run,") == 2 and gate.count(",ok,") == 2  # the gated loops are not in the test run
    # Table 5 offline: NIAH at every configured length, every recall task listed with why it did not run.
    longctx = (tiny_run / "results/test/tables/long_context.csv").read_text()
    assert "looped_pure_full" in longctx and "NIAH-S3@384" in longctx
    assert "not run: needs hazyresearch/based_nq_2048 from the Hub" in longctx


def test_distillation_stages_learn_and_the_student_ends_near_its_teacher(tiny_run):
    """stage 1 MSE and stage 2 KL fall; the student's held-out NLL is within 0.1 nats of the teacher's."""
    root = tiny_run / "results/test/distill/tiny"

    def losses(stage):
        lines = (root / stage / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines if '"loss"' in line]

    mse, kl = losses("stage1"), losses("stage2")
    assert mse[-1] < 0.3 * mse[0], mse
    assert kl[-1] < 0.5 * kl[0], kl
    teacher, student = (json.loads((root / f"eval/{role}.json").read_text()) for role in ("teacher", "student"))
    assert student["nll"] < teacher["nll"] + 0.1, (student["nll"], teacher["nll"])
    table = (tiny_run / "results/test/tables/distill.csv").read_text().splitlines()
    assert sorted(line.split(",")[0] for line in table[1:]) == ["student", "teacher"]
    bench = json.loads((root / "bench/student.json").read_text())
    assert bench["cache_bytes"] < json.loads((root / "bench/teacher.json").read_text())["cache_bytes"]


def test_every_result_has_matching_provenance(tiny_run):
    files = [
        p
        for root in ("results", "figures")
        for p in (tiny_run / root).rglob("*")
        if p.is_file() and not p.name.endswith(provenance.SUFFIX)
    ]
    assert len(files) >= 20
    for path in files:
        record = json.loads(provenance.sidecar(path).read_text())
        assert record["output"]["sha256"] == provenance.sha256_path(path), path
        assert record["command"].startswith("lt2 "), record["command"]
        assert record["config_sha256"] == provenance.config_sha256(record["config"])
        for key in ("git", "packages", "hardware", "host", "started", "ended"):
            assert key in record


@pytest.mark.parametrize("final", FINAL)
def test_audit_passes_on_finished_outputs(tiny_run, final):
    res = lt2(tiny_run, "audit", final)
    assert res.returncode == 0, res.stdout + res.stderr
    if "synthetic" in final:  # the curriculum generates its programs: the walk ends at its config
        assert "config/synth/tiny.yaml" in res.stdout
        return
    # the walk reaches the downloaded data and the recipes
    assert "data/test/raw/shakespeare" in res.stdout or final.endswith("model_size.md")
    assert "config/recipes/tiny/looped_pure_full.yaml" in res.stdout
    assert "config/recipes/tiny/_base.yaml" in res.stdout


def test_html_report(tiny_run, tmp_path):
    """`snakemake --report` bundles the final tables and figure with their captions."""
    snakemake(tiny_run, "--report", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text(errors="replace")
    for name in ("lm.csv", "model_size.csv", "training_curve.png", "long_context.csv", "niah_context.png"):
        assert name in html


def test_rerun_has_nothing_to_do(tiny_run):
    res = snakemake(tiny_run, "-n", "--profile", "profiles/local", "all")
    assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-2000:]


@pytest.mark.parametrize(
    ("intermediate", "final"),
    [
        ("data/test/shuffled/shakespeare/shakespeare.val.jsonl", "results/test/tables/lm.md"),
        ("results/test/train/tiny/looped_hybrid_gdn_4to1/model.safetensors", "results/test/tables/lm.md"),
        ("data/test/tokenizer/tokenizer.json", "results/test/tables/lm.md"),
        ("results/test/eval/ppl/tiny/looped_pure_full.json", "results/test/tables/lm.md"),
        ("results/test/eval/zeroshot/tiny/looped_pure_full.json", "results/test/tables/ablation_gate.md"),
        ("results/test/train/tiny/looped_pure_full/metrics.jsonl", "figures/test/training_curve.png"),
        ("results/test/model_info/tiny/looped_hybrid_gdn_4to1.json", "results/test/tables/model_size.md"),
    ],
    ids=["val-data", "model-weights", "tokenizer", "ppl-record", "zeroshot-record", "metrics", "model-info"],
)
def test_audit_names_a_tampered_intermediate(tiny_run, tmp_path, intermediate, final):
    wf = tmp_path / "wf"
    shutil.copytree(tiny_run, wf, ignore=shutil.ignore_patterns(".snakemake", "runs"))
    target = wf / intermediate
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, the size unchanged
    target.write_bytes(bytes(data))
    res = lt2(wf, "audit", final)
    assert res.returncode == 1, res.stdout
    # the tokenizer is a directory output: the audit names the directory that holds the changed file
    named = str(Path(intermediate).parent) if intermediate.endswith("tokenizer.json") else intermediate
    first = res.stderr.strip().splitlines()[-1]
    assert "tampered" in first and named in first, res.stderr


def test_audit_names_a_missing_intermediate(tiny_run, tmp_path):
    wf = tmp_path / "wf"
    shutil.copytree(tiny_run, wf, ignore=shutil.ignore_patterns(".snakemake", "runs"))
    (wf / "results/test/train/tiny/looped_pure_full/config.json").unlink()
    res = lt2(wf, "audit", "results/test/tables/lm.md")
    assert res.returncode == 1
    assert "missing: results/test/train/tiny/looped_pure_full/config.json" in res.stderr
