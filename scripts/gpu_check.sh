#!/usr/bin/env bash
# The CUDA checks of this repository in one run on one GPU machine, each part under its own time limit.
#
#   scripts/gpu_check.sh [PART...]     PART: verify | pytest | throughput (default: verify pytest)
#
#   verify      lt2 verify-kernels over every case -> results/paper/numerics/kernels.csv (+ .prov.json)
#   pytest      pytest -m gpu
#   throughput  lt2 bench throughput, compile and graph engines, the five 1.3B rows at batch 8, 1k context
#               -> results/paper/bench/1B/throughput_compile_check.csv
#
# LT2_VERIFY_JOBS (cases at once, default 4), LT2_PYTEST_ARGS (test paths, default tests/gpu) and
# LT2_<PART>_LIMIT (seconds) adjust a part. Logs and results are copied to $OUT when it is set (the device machine's return folder). The last lines
# printed are a summary: one line per part with its exit status and wall time.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-$(mktemp -d)}
JOBS=${LT2_VERIFY_JOBS:-4}
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(verify pytest)
summary=()

run_part() {  # name limit_s command...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS rc
    echo "=== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=$?
    summary+=("$(printf '%-10s rc=%-3s %4ss' "$name" "$rc" $((SECONDS - t0)))")
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  python3 -c "import fla, tilelang; print('fla', fla.__version__, 'tilelang', tilelang.__version__)"; } 2>&1 \
    | tee "$OUT/device.txt"

for part in "${parts[@]}"; do
    case $part in
        verify)
            run_part verify "${LT2_VERIFY_LIMIT:-330}" python3 -m lt2.cli verify-kernels --jobs "$JOBS" \
                --out results/paper/numerics/kernels.csv
            cp results/paper/numerics/kernels.csv* "$OUT/" 2>/dev/null ;;
        pytest)
            # -v: each test's verdict as it finishes, so a run cut short by its limit still says which failed
            # shellcheck disable=SC2086
            run_part pytest "${LT2_PYTEST_LIMIT:-300}" python3 -m pytest -m gpu -p no:cacheprovider -q -v -rfE \
                --tb=short --durations=15 ${LT2_PYTEST_ARGS:-tests/gpu} ;;
        throughput)
            run_part throughput "${LT2_THROUGHPUT_LIMIT:-240}" python3 -m lt2.cli bench throughput \
                config/recipes/1B/{looped_pure_full,looped_pure_gdn,looped_hybrid_gdn_4to1,looped_hybrid_gdn_dsa,looped_pure_window}.yaml --batch 8 --ctx 1k --decode-steps 16 --engines graph,compile \
                --out results/paper/bench/1B/throughput_compile_check.csv
            cp results/paper/bench/1B/throughput_compile_check.csv* "$OUT/" 2>/dev/null ;;
        *) echo "unknown part $part (valid: verify, pytest, throughput)"; exit 2 ;;
    esac
done

echo "=== summary"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary_$(IFS=_; echo "${parts[*]}").txt"
[[ -f results/paper/numerics/kernels.csv ]] && grep -c ',False,' results/paper/numerics/kernels.csv \
    | sed 's/^/verify rows out of tolerance: /'
