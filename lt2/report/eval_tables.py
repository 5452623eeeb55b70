"""Zero-shot accuracy and perplexity tables: the paper's Table 2 (`lm`), Table 3a-c and the gate ablation.

Each recipe has two evaluation records: `eval/zeroshot/<scale>/<recipe>.json` (`lt2 eval zeroshot`) and
`eval/ppl/<scale>/<recipe>.json` (`lt2 eval ppl`). A row joins them. The `lm` table also reads the bigram
baseline of each scale (`eval/bigram/<scale>/bigram_baseline.json`, `lt2 eval bigram`): a row with
perplexity and its training tokens, no accuracies.

Metric rule (one for every task, stated in every caption): a task's accuracy is lm-eval's `acc_norm`
(length-normalised choice log-likelihood) where the task defines it, else `acc`. Of the paper's ten tasks
that is acc_norm for hellaswag, piqa, sciq, openbookqa, arc_easy, arc_challenge and acc for boolq,
winogrande, commonsense_qa, copa. `avg acc` is the unweighted mean of those accuracies over the tasks the
record holds (the ten by default), in percent.

Every table carries the scale and the tokens each model was trained on (`train tokens`) and how many
documents per task were scored (`docs/task`: a limit at tiny scale, the full validation split at paper
scale), so no number is read without its budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lt2.eval.tasks import PAPER_TASKS
from lt2.report.registry import recipe_id

ZEROSHOT, PPL = "eval/zeroshot/{scale}/{recipe}.json", "eval/ppl/{scale}/{recipe}.json"

# (row label, recipe) of each ablation, in the paper's order. Loop-level schedules follow the recipes'
# own naming: coarse->fine starts with full attention and narrows the window each loop.
ABLATIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "ablation_ratio": (
        "full:GDN",
        [
            ("1:0 (full only)", "looped_pure_full"),
            ("1:1", "looped_hybrid_ratio_1to1"),
            ("1:4 (default)", "looped_hybrid_gdn_4to1"),
            ("1:6", "looped_hybrid_ratio_1to6"),
            ("1:12", "looped_hybrid_ratio_1to12"),
            ("0:1 (GDN only)", "looped_pure_gdn"),
        ],
    ),
    "ablation_placement": (
        "placement",
        [
            ("interleave (default)", "looped_hybrid_gdn_4to1"),
            ("bookend", "looped_hybrid_bookend"),
            ("front-loaded", "looped_hybrid_front"),
            ("back-loaded", "looped_hybrid_back"),
        ],
    ),
    "ablation_level": (
        "hybrid level",
        [
            ("depth-level interleave", "looped_hybrid_gdn_4to1"),
            ("loop-level coarse->fine", "looped_hybrid_full_512_256_128"),
            ("loop-level fine->coarse", "looped_hybrid_128_256_512_full"),
            ("random-sample + vote (K=5)", "looped_hybrid_random_vote"),
        ],
    ),
    "ablation_gate": (
        "model, output gate",
        [
            ("Looped Transformer, gate=no", "looped_pure_full"),
            ("Looped Transformer, gate=yes", "looped_pure_full_gated"),
            ("LT2-hybrid (Full+GDN), gate=no", "looped_hybrid_gdn_4to1"),
            ("LT2-hybrid (Full+GDN), gate=yes", "looped_hybrid_gdn_4to1_gated"),
        ],
    ),
}


def task_accuracy(metrics: dict[str, float]) -> float:
    """The metric rule: acc_norm where the task defines it, else acc (a fraction)."""
    return metrics["acc_norm"] if "acc_norm" in metrics else metrics["acc"]


def read_records(inputs: list[Path]) -> dict[tuple[str, str], dict[str, dict]]:
    """{(scale, recipe): {"zeroshot": record, "ppl": record}} from records at eval/<kind>/<scale>/<recipe>.json.

    A `lt2 eval bigram` record (eval/bigram/<scale>/bigram_baseline.json) carries the keys of a perplexity
    record, so it is read as the ppl record of its row (the baseline has no zero-shot accuracies).
    """
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for path in map(Path, inputs):
        kind = path.parent.parent.name
        if kind not in ("zeroshot", "ppl", "bigram"):
            expected = "eval/zeroshot/, eval/ppl/ or eval/bigram/"
            raise ValueError(f"{path}: expected a record under {expected}, found {kind!r}")
        out.setdefault(recipe_id(path), {})["ppl" if kind == "bigram" else kind] = json.loads(path.read_text())
    return out


def eval_row(records: dict[str, dict]) -> dict:
    """The columns of one recipe: budget, per-task accuracy (%), average, perplexity."""
    row: dict = {}
    zs, ppl = records.get("zeroshot"), records.get("ppl")
    if zs is not None:
        row["train tokens"] = zs.get("train_tokens")
        limit = (zs.get("args") or {}).get("limit")
        row["docs/task"] = str(limit) if limit is not None else "all"  # a limit, or each task's whole split
        order = sorted(zs["tasks"], key=lambda t: (PAPER_TASKS.index(t) if t in PAPER_TASKS else len(PAPER_TASKS), t))
        accs = {task: 100 * task_accuracy(zs["tasks"][task]) for task in order}  # the paper's column order
        row.update(accs)
        row["avg acc"] = sum(accs.values()) / len(accs)
    if ppl is not None:
        if row.get("train tokens") is None:  # a row without zero-shot (the bigram): its ppl record's budget
            row["train tokens"] = ppl.get("train_tokens")
        row["val ppl"] = ppl["ppl"]
        row["val bits/byte"] = ppl.get("bits_per_byte")
        row["val data"] = Path(ppl["data"]).name
    return row


def lm_table(inputs: list[Path]) -> pd.DataFrame:
    """Table 2: zero-shot accuracy per task (%), its average and validation perplexity, per recipe, with the
    tokens each was trained on; a `lt2 eval bigram` record among the inputs is the baseline row (a Kneser-Ney
    bigram of the same training data, scored on the same validation tokens: perplexity only)."""
    rows = [{"recipe": r, "scale": s, **eval_row(recs)} for (s, r), recs in read_records(inputs).items()]
    df = pd.DataFrame(rows)
    if "train tokens" in df:  # the budget beside the row's name (the bigram row adds it last); integers
        df.insert(2, "train tokens", df.pop("train tokens").astype("Int64"))
    return df


def ablation_table(name: str):
    """A Table 3 / gate ablation: one row per setting at each scale the records cover; a setting whose recipe
    the run did not include reads `not run`."""
    label, settings = ABLATIONS[name]

    def build(inputs: list[Path]) -> pd.DataFrame:
        records = read_records(inputs)
        rows = []
        for scale in sorted({s for s, _ in records}):
            for setting, recipe in settings:
                recs = records.get((scale, recipe))
                status = "ok" if recs else "not run"
                rows.append({"recipe": recipe, "scale": scale, label: setting, "status": status,
                             **(eval_row(recs) if recs else {})})  # fmt: skip
        df = pd.DataFrame(rows)
        if "train tokens" in df:  # integers, blank where a setting did not run
            df["train tokens"] = df["train tokens"].astype("Int64")
        return df

    build.__doc__ = f"{name}: accuracy and perplexity per {label} setting"
    return build


def ablation_recipes(name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(recipe for _, recipe in ABLATIONS[name][1]))
