"""Long-context suite: NIAH prompts (length, depth, answer, seeding), the scoring path through lm-eval with
oracle and constant stub models, the recall suite's offline plan, and the cache-capacity refusal.

pytest tests/eval/test_longctx.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lm_eval.api.model import LM

from lt2.eval import longctx
from lt2.eval.longctx import LongctxArgs, cache_capacity, recall_plan, run_longctx
from lt2.eval.niah import DEPTHS, make_sample, niah_samples, read_haystack, split_sentences

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def text_setup(tmp_path_factory):
    """A 512-token BPE trained on Shakespeare (as the tiny scale) and a haystack of held-out passages."""
    import os

    from lt2.data.tokenizer import train_bpe

    root = Path(os.environ.get("LT2_SHARED_DATA", REPO.parent / "shared" / "data"))
    source = root / "tinyshakespeare" / "input.txt"
    if not source.is_file():
        pytest.skip(f"shared data not found: {source}")
    docs = source.read_text().split("\n\n")
    tmp = tmp_path_factory.mktemp("niah")
    (tmp / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:3000]))
    (tmp / "val.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[6000:6300]))
    tok = train_bpe([tmp / "train.jsonl"], 512, tmp / "tok")
    return tok, tmp / "tok", tmp / "val.jsonl"


def counter(tok):
    return lambda text: len(tok.encode(text, bos=True))


@pytest.mark.parametrize("task", ["niah_single_1", "niah_single_2", "niah_single_3"])
@pytest.mark.parametrize("length", [256, 700])
def test_prompt_length_needle_depth_and_answer(text_setup, task, length):
    tok, _, val = text_setup
    essay = read_haystack(val)
    for index in range(3):
        s = make_sample(task, length, index, 7, counter(tok), essay)
        # Fitted word by word: short by less than one word (this 512-token BPE spends up to 9 on 'VINCENTIO:').
        assert length - 10 <= s.length <= length
        assert s.length == len(tok.encode(s.input + " " + s.gen_prefix, bos=True))
        value = s.outputs[0]
        assert s.input.count(value) == 1  # the answer is recoverable by string search, once
        # The needle sits at the requested depth, to within one sentence of the haystack.
        context = s.input.split("\n")[1]
        sentences = split_sentences(context)
        at = next(i for i, sent in enumerate(sentences) if value in sent)
        assert s.depth in DEPTHS
        assert abs(at - round(s.depth / 100 * (len(sentences) - 1))) <= 1


def test_prompts_are_seeded(text_setup):
    tok, _, val = text_setup
    essay = read_haystack(val)
    first = niah_samples("niah_single_3", [300, 400], 3, 1, counter(tok), essay)
    again = niah_samples("niah_single_3", [400], 3, 1, counter(tok), essay)
    assert first[3:] == again  # same prompt whatever else was generated
    other = niah_samples("niah_single_3", [400], 3, 2, counter(tok), essay)
    assert [s["outputs"] for s in other] != [s["outputs"] for s in again]


def test_too_short_a_context_is_refused(text_setup):
    tok, _, _ = text_setup
    with pytest.raises(ValueError, match="context length 32 is too short"):
        make_sample("niah_single_1", 32, 0, 0, counter(tok), None)


class StubLM(LM):
    """An lm-eval model that answers NIAH prompts by a rule; it records the prompts it was sent."""

    def __init__(self, answer):
        super().__init__()
        self.answer, self.prompts = answer, []

    def generate_until(self, requests):
        self.prompts += [r.args[0] for r in requests]
        return [self.answer(r.args[0]) for r in requests]

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


def copy_needle(prompt: str) -> str:
    """The cheating model: finds the needle of the key the question asks for and copies its value."""
    key = re.search(r"special magic \w+ for (\S+) mentioned in the provided text is$", prompt).group(1)
    return " " + re.search(rf"for {re.escape(key)} is: (\S+)\.", prompt).group(1) + ".\n"


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_oracle_scores_100_and_a_constant_model_0(text_setup, no_hub_cache):
    tok, tok_dir, val = text_setup
    args = LongctxArgs(context_lengths=[256, 512], num_samples=4, hub=False, max_gen_toks=48)
    oracle = StubLM(copy_needle)
    record = run_longctx("stub", tok_dir, val, args, lm=oracle, seq_len=256)
    assert record["context_lengths"] == [256, 512] and record["max_length"] == 512 + 48
    for task in longctx.NIAH_TASKS:
        assert {k: v["acc"] for k, v in record["niah"][task].items()} == {"256": 100.0, "512": 100.0}
    # lm-eval sends the prompt with its answer prefix: L tokens, give or take a few.
    lengths = sorted(len(tok.encode(p, bos=True)) for p in oracle.prompts)
    assert len(lengths) == 3 * 2 * 4 and lengths[0] >= 246 and lengths[11] <= 256 and 502 <= lengths[12] <= 512
    # Every recall task is listed, none silently dropped: without the Hub and a cache, each says why.
    assert record["recall"]["swde"]["status"] == "not run: needs hazyresearch/based-swde-v2 from the Hub"
    assert set(record["recall"]) == set(longctx.RECALL_DATASETS)

    args = LongctxArgs(context_lengths=[256], num_samples=4, hub=False, max_gen_toks=48, recall_tasks=[])
    constant = run_longctx("stub", tok_dir, val, args, lm=StubLM(lambda p: " 1234567.\n"), seq_len=256)
    for task in longctx.NIAH_TASKS:
        assert all(v["acc"] == 0.0 for v in constant["niah"][task].values())


def test_recall_plan_offline_runs_what_is_cached(no_hub_cache):
    snapshot = no_hub_cache / "datasets--hazyresearch--based-fda" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    run, skipped = recall_plan(LongctxArgs(hub=False))
    assert run == ["fda"] and set(skipped) == set(longctx.RECALL_DATASETS) - {"fda"}
    run, skipped = recall_plan(LongctxArgs(hub=True))
    assert run == list(longctx.RECALL_DATASETS) and not skipped


def test_context_above_the_cache_capacity_is_refused():
    args = LongctxArgs(context_lengths=[1024, 4096], max_gen_toks=128, max_length=4096)
    with pytest.raises(ValueError, match=r"needs 4224 cache slots, above the cache capacity max_length=4096"):
        cache_capacity(args, [1024, 4096])
    assert cache_capacity(LongctxArgs(max_gen_toks=128), [4096]) == 4224


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("niah_tasks", ["niah_multikey_1"], "unknown NIAH task"),
        ("recall_tasks", ["triviaqa"], "unknown recall task"),
        ("context_lengths", [0], "positive token counts"),
    ],
)
def test_bad_arguments_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        LongctxArgs(**{field: value}).check()


def test_cli_table_and_figure_on_a_random_tiny_model(text_setup, tmp_path, no_hub_cache, monkeypatch, capsys):
    """`lt2 eval longctx` end to end through the `lt2` lm-eval model, then the long_context table and figure."""
    import pandas as pd
    import yaml

    from lt2.cli import main
    from lt2.model import LoopedLM
    from lt2.recipe import load_recipe
    from lt2.report.figures import build_figure
    from lt2.report.provenance import sidecar
    from lt2.report.tables import build_table, to_markdown

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # --no-hub sets them; restored after the test
        monkeypatch.setenv(var, "1")
    _, tok_dir, val = text_setup
    model = LoopedLM(load_recipe(REPO / "config/recipes/tiny/looped_hybrid_gdn_dsa.yaml").model)
    model.init_weights()
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "recipe.yaml").write_text(yaml.safe_dump({"name": "r", "data": {"seq_len": 128}}))
    out = tmp_path / "eval" / "longctx" / "tiny" / "looped_hybrid_gdn_dsa.json"
    argv = ["eval", "longctx", str(tmp_path / "model"), "--tokenizer", str(tok_dir), "--haystack", str(val),
            "--out", str(out), "--lengths", "256", "--num-samples", "2", "--max-gen-toks", "8",
            "--niah-tasks", "lt2_niah_single_1,lt2_niah_single_3", "--recall-tasks", "swde", "--no-hub"]  # fmt: skip
    # A context above the cache capacity is refused before any work, naming the limit.
    assert main([*argv, "--max-length", "260"]) == 2
    assert "above the cache capacity max_length=260" in capsys.readouterr().err and not out.exists()

    assert main([*argv, "--batch-size", "2"]) == 0
    record = json.loads(out.read_text())
    assert record["train_seq_len"] == 128 and record["max_length"] == 256 + 8
    assert 0 <= record["niah"]["lt2_niah_single_3"]["256"]["acc"] <= 100
    assert json.loads(sidecar(out).read_text())["output"]["sha256"]

    # The same record filed as a 1B row gets the paper's values beside it; the tiny row gets none.
    as_1b = tmp_path / "eval" / "longctx" / "1B" / "longctx_hybrid_gdn_dsa.json"
    as_1b.parent.mkdir(parents=True)
    as_1b.write_text(out.read_text())
    table = build_table("long_context", [out, as_1b], REPO / "config/paper/long_context.csv")
    assert list(table["scale"]) == ["1B", "tiny"] and list(table["trained at"]) == [128, 128]
    assert table.loc[1, "SWDE"] == "not run: needs hazyresearch/based-swde-v2 from the Hub"
    assert "NIAH-S1@256" in table and "NIAH-S3@256" in table
    assert table.loc[0, "paper NIAH-S1@4K [1B]"] == 91.4 and pd.isna(table.loc[1, "paper NIAH-S1@4K [1B]"])
    assert "| looped_hybrid_gdn_dsa | tiny |" in to_markdown(table)
    fig = build_figure("niah_context", [out])
    assert len(fig.axes) == 2


def test_paper_rows_sit_beside_the_1b_longctx_recipes():
    from lt2.report.tables import load_paper

    paper = load_paper(REPO / "config/paper/long_context.csv", "long_context")
    assert len(paper) == 8 * 15 and set(paper["row"].str.split("/").str[0]) == {"1B"}
    for row in paper["row"].unique():
        assert (REPO / "config" / "recipes" / f"{row}.yaml").is_file(), row
    gdn_4k = paper[(paper["row"] == "1B/longctx_looped_gdn") & (paper["column"] == "NIAH-S1@4K")]
    assert gdn_4k["value"].item() == 99.8


def test_based_recall_task_prompt_and_contains_scoring(tmp_path):
    """The project's Based/JRT task YAMLs (one shared base, so one is run) on local rows laid out like the
    Hub's: the prompt is `<context> <question>`, and `contains` scores 1 when a gold answer occurs in the output."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    docs = [
        {"context": " The Thames flows through London. ", "question": "The river of London is", "answers": ["Thames"]},
        {"context": "Paris is in France.", "question": " Paris lies in ", "answers": ["France", "FR"]},
        {"context": "Rome is old.", "question": "Rome is", "answers": ["old"]},
    ]
    rows = tmp_path / "validation.jsonl"
    rows.write_text("".join(json.dumps(d) + "\n" for d in docs))
    for name in ("based_triviaqa", "based_nq", "based_drop"):
        config = load_yaml(longctx.TASKS_DIR / f"{name}.yaml", resolve_func=True)
        assert config["dataset_path"] == longctx.RECALL_DATASETS[name] and config["output_type"] == "generate_until"
    task = "based_drop"
    config.update(dataset_path="json", dataset_kwargs={"data_files": {"validation": str(rows)}})
    answers = {"The Thames flows through London. The river of London is": " the thames, as said",
               "Paris is in France. Paris lies in": " fr\nFrance", "Rome is old. Rome is": " young"}  # fmt: skip
    stub = StubLM(lambda prompt: answers[prompt])
    res = lm_eval.simple_evaluate(model=stub, tasks=[config], task_manager=TaskManager(include_defaults=False))
    assert sorted(stub.prompts) == sorted(answers)
    assert res["results"][task]["contains,none"] == pytest.approx(2 / 3)  # "FR" matches "fr"; "old" is absent
