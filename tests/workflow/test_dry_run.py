"""Planning the DAG: the paper-scale DAG lists every job without network; one table plans only its ancestors.

pytest tests/workflow/test_dry_run.py
"""

from __future__ import annotations

from pathlib import Path

from workflow_helpers import REPO, job_counts, snakemake

PAPER_SCALES = ("600M", "1B")


def paper_recipes(root: Path) -> list[str]:
    return [f"{s}/{p.stem}" for s in PAPER_SCALES for p in sorted((root / s).glob("*.yaml")) if p.stem[0] != "_"]


def test_paper_dry_run_lists_every_job(workflow):
    recipes = paper_recipes(REPO / "config" / "recipes")
    assert len(recipes) >= 2 * 20, recipes  # every paper row at 600M and at 1B
    res = snakemake(workflow, "-n", "-p", "all", "--configfile", "config/paper.yaml", timeout=120, overlay=False)
    counts = job_counts(res.stdout)
    n = len(recipes)
    assert counts == {
        "download": 1,  # fineweb_edu_10bt (both scales train on it in config/paper.yaml)
        "shuffle": 1,
        "tokenizer": 1,
        "train": n,
        "model_info": n,
        "eval_ppl": n,
        "eval_zeroshot": n,
        "eval_longctx": 8,  # the 1.3B Table 5 rows trained at 2048 tokens (config eval.longctx)
        "eval_bigram": 2,  # the bigram baseline of each scale's corpus
        # model_size, lm, 4 ablations, decode, train_throughput, long_context, distill, synthetic: one wildcard
        # rule builds every table
        "table": 11,
        # training_curve, grad_norm, mixer_costs, decode_throughput, niah_context, synthetic_heatmap
        "figure": 6,
        "bench_throughput": 1,  # one GPU job times every benchmarked recipe side by side
        "bench_train": 2,  # the 600M full-attention and GDN loops, one GPU job each
        "distill_teacher": 1,  # Ouro-1.4B from the Hub at its pinned revision, converted
        "distill_tokenizer": 1,  # the teacher's tokenizer: the stages read the corpus with it
        "distill_stage1": 1,
        "distill_stage2": 1,
        "distill_stage3": 1,
        "distill_export": 1,
        "distill_zeroshot": 2,  # teacher and student
        "distill_eval": 2,
        "distill_longctx": 2,
        "distill_bench": 2,
        "synthetic": 8 * 4,  # every arm at every loop count, one GPU job each
        "all": 1,
    }, counts
    assert "--kind hf --name meta-llama/Meta-Llama-3-8B" in res.stdout
    for rid in recipes:
        assert f"results/paper/train/{rid}/model.safetensors" in res.stdout
    assert "config/recipes/1B/_base.yaml" in res.stdout  # bases are inputs of their recipes' jobs
    assert "results/paper/train/1B/_base" not in res.stdout  # ... and never recipes themselves
    assert "lt2 bench train config/recipes/600M/looped_pure_gdn.yaml data.batch_size=2" in res.stdout
    assert "results/paper/bench/train/600M/looped_pure_full.json" in res.stdout
    assert "lt2 eval longctx results/paper/train/1B/longctx_hybrid_gdn_dsa --tokenizer" in res.stdout
    assert "--lengths 1024,2048,4096" in res.stdout
    assert "lt2 eval zeroshot results/paper/distill/1B/student --tokenizer results/paper/distill/1B/" in res.stdout
    assert "--out results/paper/distill/1B/longctx/teacher.json" in res.stdout
    assert "lt2 synth run config/synth/paper.yaml  --arm gdn_window --loop-count 8" in res.stdout
    # the heatmap prints the paper's outcomes: its registry entry adds the paper file after the records
    assert "T8.json config/paper/synthetic.csv --png figures/paper/synthetic_heatmap.png" in res.stdout


def test_long_context_table_plans_only_its_recipes(workflow):
    res = snakemake(workflow, "-n", "-p", "results/test/tables/long_context.md")
    counts = job_counts(res.stdout)
    assert counts == {"download": 1, "shuffle": 1, "tokenizer": 1, "train": 1, "eval_longctx": 1, "table": 1}, counts
    assert "--lengths 256,384,512 --no-hub" in res.stdout  # the offline tiny default


def test_one_table_plans_only_its_ancestors(workflow):
    res = snakemake(workflow, "-n", "results/test/tables/model_size.md")
    assert job_counts(res.stdout) == {"model_info": 2, "table": 1}, res.stdout[-3000:]


def test_train_throughput_table_plans_only_the_training_benchmarks(workflow):
    res = snakemake(workflow, "-n", "results/paper/tables/train_throughput.md", "--configfile", "config/paper.yaml",
                    overlay=False)  # fmt: skip
    assert job_counts(res.stdout) == {"bench_train": 2, "table": 1}, res.stdout[-3000:]


def test_gpu_results_target_plans_every_gpu_measurement(workflow):
    """One target regenerates what is committed from GPU runs: numerics, decode and training benchmarks."""
    res = snakemake(workflow, "-n", "-p", "gpu_results", "--configfile", "config/paper.yaml", overlay=False)
    counts = job_counts(res.stdout)
    assert counts == {"verify_kernels": 1, "bench_throughput": 1, "bench_train": 2, "gpu_results": 1}, counts
    assert "lt2 verify-kernels --recipes config/recipes --jobs 4 --out results/paper/numerics/kernels.csv" in res.stdout
    assert "--record-only" not in res.stdout  # an out-of-tolerance check must fail the job


def test_lm_table_plans_training_but_not_other_tables(workflow):
    counts = job_counts(snakemake(workflow, "-n", "results/test/tables/lm.md").stdout)
    assert counts == {"download": 1, "shuffle": 1, "tokenizer": 1, "train": 2, "eval_ppl": 2, "eval_zeroshot": 2,
                      "eval_bigram": 1, "table": 1}, counts  # fmt: skip


def test_an_ablation_table_plans_only_its_own_recipes(workflow):
    """ablation_gate reads the gated and ungated loops only: at paper scale 2 x 4 trainings, not every recipe."""
    res = snakemake(workflow, "-n", "-p", "results/paper/tables/ablation_gate.md", "--configfile", "config/paper.yaml",
                    overlay=False)  # fmt: skip
    counts = job_counts(res.stdout)
    assert counts["train"] == counts["eval_zeroshot"] == counts["eval_ppl"] == 8 and counts["table"] == 1, counts
    assert "lt2 eval zeroshot results/paper/train/1B/looped_pure_full_gated --tokenizer" in res.stdout
    assert "--data hub --batch-size 32" in res.stdout and "--limit" not in res.stdout


def test_multi_gpu_training_launches_one_rank_per_gpu(workflow):
    """With profiles/slurm a 1B training job gets 8 GPUs and lt2 train starts 8 ranks; locally it is one process."""
    target = "results/paper/train/1B/looped_pure_full/model.safetensors"
    slurm = snakemake(workflow, "-n", "-p", target, "--profile", "profiles/slurm", "--configfile", "config/paper.yaml",
                      overlay=False).stdout  # fmt: skip
    assert "lt2 train config/recipes/1B/looped_pure_full.yaml" in slurm and "--nproc-per-node 8" in slurm
    local = snakemake(workflow, "-n", "-p", target, "--configfile", "config/paper.yaml", overlay=False).stdout
    assert "lt2 train config/recipes/1B/looped_pure_full.yaml" in local and "--nproc-per-node 1" in local
