# Loads and validates the run configuration, finds the recipes, and holds every helper the rules use:
# path helpers (outputs are namespaced by the config's `name`), input functions and command-line pieces.
# Rules stay declarative: each builds one `lt2 ...` command from these helpers.

import functools
import shlex
from pathlib import Path

from snakemake.utils import min_version, validate

from lt2.distill.args import load_distill
from lt2.recipe import recipe_files, recipes_with_bases, scale_recipes
from lt2.report.figures import FIGURES
from lt2.report.registry import bench_throughput_records, bench_train_records
from lt2.report.tables import TABLES

min_version("9.0")

# Validate before any rule is defined: a bad key or value fails here, naming itself, before any job runs.
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

NAME = config["name"]
SCALES = ("tiny", "600M", "1B")


wildcard_constraints:
    scale="|".join(SCALES),
    recipe=r"[A-Za-z0-9_.-]+",
    dataset=r"[A-Za-z0-9_.-]+",
    table="|".join(TABLES),
    figure="|".join(FIGURES),
    role="teacher|student",


# ---------------------------------------------------------------- paths
# data/ and runs/ are working folders; results/ and figures/ hold what is reported (with provenance).
def data_path(path):
    return f"data/{NAME}/{path}"


def run_path(path):
    return f"runs/{NAME}/{path}"


def result_path(path):
    return f"results/{NAME}/{path}"


def figure_path(path):
    return f"figures/{NAME}/{path}"


def log_path(path):
    """Logs mirror their output's path: results/<name>/x/y.json -> logs/<name>/x/y.log."""
    return f"logs/{NAME}/{path}"


CHUNK_IDS = [f"{i:02d}" for i in range(config["shuffle"]["nchunks"])]
# Priority of the chain to the trainings (download -> shuffle -> tokenizer -> train), the DAG's longest: it
# starts as soon as it can and the other jobs (the synthetic curriculum, model costs) fill the cores around it.
# (Priority orders the jobs that fit the free cores; it reserves none, so the local profile runs the shuffle
# and the tokenizer on one thread each.)
CRITICAL_PATH = 1
TOKENIZER_DIR = data_path("tokenizer")


def shuffled_dir(dataset):
    return data_path(f"shuffled/{dataset}")


def chunk_files(dataset):
    return expand(data_path("shuffled/{dataset}/{dataset}.chunk.{i}.jsonl"), dataset=dataset, i=CHUNK_IDS)


def val_file(dataset):
    return data_path(f"shuffled/{dataset}/{dataset}.val.jsonl")


# ---------------------------------------------------------------- recipes
def find_recipes():
    """`<scale>/<recipe>` ids this config runs: `recipes.only`, else every YAML under the chosen scales."""
    root = Path(config["recipes"]["dir"])
    if config["recipes"]["only"]:
        ids = list(config["recipes"]["only"])
        for rid in ids:
            if not (root / f"{rid}.yaml").is_file():
                raise ValueError(f"config recipes.only names {rid!r}, but {root / rid}.yaml does not exist")
    else:
        ids = [f"{scale}/{p.stem}" for scale in config["recipes"]["scales"] for p in scale_recipes(root, scale)]
    if not ids:
        raise ValueError(f"no recipes: {root}/<scale>/*.yaml has none for scales {config['recipes']['scales']}")
    for rid in ids:
        scale = rid.split("/")[0]
        if scale not in config["corpus"]:
            raise ValueError(f"recipe {rid}: config `corpus` names no dataset for scale {scale!r}")
    return ids


RECIPES = find_recipes()

for _scale, _dataset in config["corpus"].items():
    if _dataset not in config["datasets"]:
        raise ValueError(f"corpus.{_scale} = {_dataset!r} is not one of the configured datasets {sorted(config['datasets'])}")
if config["tokenizer"]["kind"] == "bpe" and config["tokenizer"]["dataset"] not in config["datasets"]:
    raise ValueError(f"tokenizer.dataset {config['tokenizer']['dataset']!r} is not a configured dataset")
if config["tokenizer"]["kind"] == "hf" and not config["tokenizer"]["name"]:
    raise ValueError("tokenizer.kind is hf, so tokenizer.name must name the tokenizer repository")


def recipe_file(wildcards):
    return f"{config['recipes']['dir']}/{wildcards.scale}/{wildcards.recipe}.yaml"


def recipe_bases(wildcards):
    """The files a recipe builds on through `base: <file>` (lt2.recipe.recipe_files): a change there re-runs
    the recipe's jobs, and their provenance records the bases too."""
    return [str(p) for p in recipe_files(recipe_file(wildcards))[:-1]]


def corpus_of(wildcards):
    return config["corpus"][wildcards.scale]


# ---------------------------------------------------------------- input functions
def corpus_chunks(wildcards):
    return chunk_files(corpus_of(wildcards))


def corpus_val(wildcards):
    return val_file(corpus_of(wildcards))


def tokenizer_inputs(wildcards):
    """A BPE is trained on the training chunks of its dataset; a published tokenizer needs no input."""
    tok = config["tokenizer"]
    return chunk_files(tok["dataset"]) if tok["kind"] == "bpe" else []


def conda_env(wildcards):
    """The conda env of a recipe job (--use-conda): the GPU env at paper scales, the CPU env at tiny; a job
    without a scale (the synthetic curriculum) follows the run's scales."""
    scales = {wildcards.scale} if hasattr(wildcards, "scale") else set(config["recipes"]["scales"])
    return "../envs/cpu.yaml" if scales <= {"tiny"} else "../envs/gpu.yaml"


def bench_recipes(wildcards):
    """The recipe files of the throughput benchmark (config bench.throughput), in the configured order."""
    bench = config["bench"]["throughput"]
    return [f"{config['recipes']['dir']}/{wildcards.scale}/{r}.yaml" for r in bench["recipes"]]


def bench_args(wildcards):
    bench = config["bench"]["throughput"]
    return f"--batch {bench['batch']} --ctx {bench['ctx']} --decode-steps {bench['decode_steps']}"


def bench_train_args(wildcards):
    bench = config["bench"]["train"]
    overrides = " ".join(shlex.quote(o) for o in bench["overrides"])
    return f"{overrides} --steps {bench['steps']} --warmup {bench['warmup']}"


def verify_recipes(wildcards):
    """The 600M recipes (and their bases) whose mixer settings the numerics check uses (lt2.bench.verify)."""
    return [str(p) for p in recipes_with_bases(scale_recipes(config["recipes"]["dir"], "600M"))]


def gpu_outputs(wildcards):
    """The GPU results of this configuration: kernel numerics, plus the configured benchmarks."""
    outputs = ["numerics/kernels.csv"]
    if "throughput" in config["bench"]:
        outputs += bench_throughput_records(config)
    if "train" in config["bench"]:
        outputs += bench_train_records(config)
    return [result_path(p) for p in outputs]


# ---------------------------------------------------------------- tables and figures (lt2.report registries)
def record_path(path):
    """A registry record: under results/<name>/, except recipe files (analytic figures read the recipes)."""
    return path if path.startswith(config["recipes"]["dir"] + "/") else result_path(path)


def table_records(wildcards):
    return [record_path(p) for p in TABLES[wildcards.table].record_paths(config, RECIPES)]


def table_paper(wildcards):
    return f"{config['report']['paper']}/{wildcards.table}.csv"


def figure_records(wildcards):
    return [record_path(p) for p in FIGURES[wildcards.figure].record_paths(config, RECIPES)]


def figure_paper(wildcards):
    """The paper's numbers a figure prints next to ours (its entry's `paper` table), or none."""
    paper = FIGURES[wildcards.figure].paper
    return [f"{config['report']['paper']}/{paper}.csv"] if paper else []


def report_caption(wildcards):
    """The caption paragraph of a table or figure (workflow/report/<name>.rst) for the report's template."""
    name = wildcards.get("table") or wildcards.get("figure")
    return Path(workflow.basedir, "workflow", "report", f"{name}.rst").read_text()


def final_outputs():
    """What `all` builds: every configured table (md, csv, tex) and figure (png, pdf)."""
    tables = expand(result_path("tables/{table}.{ext}"), table=config["report"]["tables"], ext=["md", "csv", "tex"])
    figures = expand(figure_path("{figure}.{ext}"), figure=config["report"]["figures"], ext=["png", "pdf"])
    return tables + figures


# ---------------------------------------------------------------- command-line pieces

def download_args(wildcards):
    limit = config["datasets"][wildcards.dataset]["limit"]
    return "" if limit is None else f"--limit {limit}"




def tokenizer_args(wildcards):
    tok = config["tokenizer"]
    if tok["kind"] == "bpe":
        return f"--kind bpe --input {' '.join(chunk_files(tok['dataset']))} --vocab-size {tok['vocab_size']}"
    return f"--kind hf --name {tok['name']}"


def recipe_overrides(wildcards):
    return shlex.join(config["recipes"]["overrides"])


def train_overrides(wildcards, input):
    """Data paths reach the recipe as dot-list overrides, after the config's own overrides."""
    data = [
        f"data.train_dir={shuffled_dir(corpus_of(wildcards))}",
        f"data.val_file={input.val}",
        f"data.tokenizer={input.tokenizer}",
    ]
    return shlex.join([*config["recipes"]["overrides"], *data])


def gpus_of(resources):
    """GPUs a job was given by the profile: `gpu: N` (sbatch --gpus) or `gres: gpu[:type]:N` (--gres)."""
    if resources.get("gpu"):
        return int(resources["gpu"])
    gres = str(resources.get("gres") or "")
    return int(gres.rsplit(":", 1)[-1]) if gres.startswith("gpu:") else 0


def train_nproc(wildcards, resources):
    """Ranks of a training job: one per GPU the profile gives it (lt2 train starts them itself, forwards
    SLURM's pre-timeout signal to each and keeps the requeue exit status 75, which torchrun would not)."""
    return max(gpus_of(resources), 1)




def bigram_args(wildcards):
    """`lt2 eval bigram` scores the tokens that `lt2 eval ppl` scores: the same max_tokens."""
    max_tokens = config["eval"]["ppl"]["max_tokens"]
    return "" if max_tokens is None else f"--max-tokens {max_tokens}"


def bigram_train_files(wildcards):
    return chunk_files(config["corpus"][wildcards.scale])[: config["eval"]["bigram"]["chunks"] or None]


def ppl_args(wildcards):
    """`lt2 eval ppl` options from config `eval.ppl` (None: the command's default)."""
    ppl = config["eval"]["ppl"]
    flags = {"--seq-len": ppl["seq_len"], "--stride": ppl["stride"], "--batch-size": ppl["batch_size"],
             "--max-tokens": ppl["max_tokens"]}  # fmt: skip
    return " ".join(f"{flag} {value}" for flag, value in flags.items() if value is not None)


def zeroshot_args(wildcards):
    """`lt2 eval zeroshot` options from config `eval.zeroshot`."""
    zs = config["eval"]["zeroshot"]
    args = f"--tasks {','.join(zs['tasks'])} --data {zs['data']} --batch-size {zs['batch_size']}"
    return args + (f" --limit {zs['limit']}" if zs["limit"] is not None else "")


def longctx_args(wildcards):
    """`lt2 eval longctx` options from config `eval.longctx` (the NIAH grid, the answer budget, the Hub)."""
    lc = config["eval"]["longctx"]
    flags = [f"--num-samples {lc['num_samples']}", f"--max-gen-toks {lc['max_gen_toks']}",
             f"--batch-size {lc['batch_size']}", f"--seed {lc['seed']}"]  # fmt: skip
    if lc["context_lengths"]:
        flags.append("--lengths " + ",".join(str(n) for n in lc["context_lengths"]))
    if not lc["hub"]:
        flags.append("--no-hub")
    return " ".join(flags)


# ---------------------------------------------------------------- distillation (workflow/rules/distill.smk)
# Config `distill`: the distillation YAML, its teacher (a recipe this config trains, or an Ouro checkpoint
# named in that YAML) and the decode-cost settings. Absent: no distillation jobs.
DISTILL = config.get("distill") or {}


@functools.cache
def distill_args():
    """The distillation YAML resolved (lt2.distill.args: defaults, `base:` files), read once."""
    return load_distill(DISTILL["config"])


def distill_scale():
    return distill_args().scale


def distill_path(path):
    return result_path(f"distill/{distill_scale()}/{path}")


def distill_run(stage):
    return run_path(f"distill/{distill_scale()}/{stage}")


def distill_from_hub():
    """True when the teacher is an Ouro checkpoint from the Hub (converted by rule distill_teacher)."""
    return DISTILL["teacher"]["source"] == "hub"


def distill_teacher_dir():
    if distill_from_hub():
        return distill_path("teacher")
    return result_path(f"train/{DISTILL['teacher']['recipe']}")


def distill_teacher_files(wildcards=None):
    return [f"{distill_teacher_dir()}/model.safetensors", f"{distill_teacher_dir()}/config.json"]


def distill_hub():
    """(repository, pinned revision) of the Ouro teacher, from the distillation YAML."""
    teacher = distill_args().teacher
    return teacher.hub_id, teacher.revision


def distill_tokenizer():
    """The tokenizer the stages read data with: the teacher's (Ouro's from the Hub), else the run's own."""
    return distill_path("tokenizer") if distill_from_hub() else TOKENIZER_DIR


def distill_corpus():
    return config["corpus"][distill_scale()]


def distill_chunks(wildcards):
    return chunk_files(distill_corpus())


def distill_val(wildcards):
    return val_file(distill_corpus())


def distill_tokenizer_input(wildcards):
    return distill_tokenizer()


def distill_teacher_param(wildcards):
    return distill_teacher_dir()


def distill_hub_id(wildcards):
    return distill_hub()[0]


def distill_revision(wildcards):
    return distill_hub()[1]


def distill_overrides(stage):
    """Data paths of one stage as dot-list overrides (the same packed data as pre-training)."""

    def overrides(wildcards, input):
        corpus = distill_corpus()
        return shlex.join(
            [
                f"{stage}.data.train_dir={shuffled_dir(corpus)}",
                f"{stage}.data.val_file={val_file(corpus)}",
                f"{stage}.data.tokenizer={distill_tokenizer()}",
            ]
        )

    return overrides


def distill_role_dir(wildcards):
    return distill_teacher_dir() if wildcards.role == "teacher" else distill_path("student")


def distill_role_files(wildcards):
    return [f"{distill_role_dir(wildcards)}/model.safetensors", f"{distill_role_dir(wildcards)}/config.json"]


def distill_bench_args(wildcards):
    bench = DISTILL["bench"]
    return f"--ctx {bench['ctx']} --batch {bench['batch']} --steps {bench['steps']} --device {bench['device']}"


# ---------------------------------------------------------------- synthetic curriculum
wildcard_constraints:
    arm=r"[a-z0-9_]+",
    loop_count=r"[0-9]+",


def synthetic_config_file(wildcards):
    return config["synthetic"]["config"]


def synthetic_overrides(wildcards):
    return shlex.join(config["synthetic"]["overrides"])

