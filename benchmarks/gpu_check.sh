#!/usr/bin/env bash
# Every GPU check of the fast path, for a session or a user with a CUDA GPU: the CUDA-only tests,
# then both benchmarks (stock and fast in one run each). Estimated 6-9 minutes on an H100 in all,
# most of it torch.compile warm-up and the stock sampler.
#
#   bash benchmarks/gpu_check.sh OUT_DIR                  # every step: tests train train12 sample
#   bash benchmarks/gpu_check.sh OUT_DIR tests sample     # some steps (a 10-minute call: two calls)
#
# Steps: tests (tests/test_fast_path.py), train (3 x 1024, stock and fast: loss check and ratio),
# train12 (fast at batch 12 against stock at 3: the goal allows the largest batch that fits), sample.
# Each runs under a time limit; its log, its JSON result and the README row it prints go to OUT_DIR.
# Needs torch (CUDA), transformers, pandas and pytest; the kit itself need not be installed.
# GPU_CHECK_ON_CPU=1 runs the steps on a machine without CUDA (tiny model), to check the script.
set -uo pipefail
usage="usage: bash benchmarks/gpu_check.sh OUT_DIR [tests] [train] [train12] [sample]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd) || exit 2
shift
steps=${*:-tests train train12 sample}
for step in $steps; do
    case $step in tests | train | train12 | sample) ;; *) echo "gpu_check: unknown step '$step'; $usage" >&2; exit 2 ;; esac
done
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$py" -c 'import torch, transformers' 2>/dev/null; then
    echo "gpu_check: $py cannot import torch and transformers; set PYTHON to the environment's python" >&2
    exit 2
fi
if [ "${GPU_CHECK_ON_CPU:-0}" = 1 ]; then
    echo "gpu_check: GPU_CHECK_ON_CPU=1: the steps run wherever torch runs (on a CPU: the tiny model)"
elif ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA GPU; on a CPU run the two benchmark scripts alone" \
        "(or GPU_CHECK_ON_CPU=1 to try this script itself)" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

failed=()
run() {  # run NAME SECONDS COMMAND...: under a time limit, logged; a failure is remembered
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { failed+=("$name (exit $rc)"); echo "== $name failed: exit $rc"; }
}

for step in $steps; do
    case $step in
        tests) run tests 240 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_fast_path.py ;;
        train) run train 240 "$py" benchmarks/train_throughput.py --out "$out/train.json" ;;
        train12) run train12 240 "$py" benchmarks/train_throughput.py --fast-batch 12 --out "$out/train12.json" ;;
        sample) run sample 200 "$py" benchmarks/sample_throughput.py --out "$out/sample.json" ;;
    esac
done

echo
echo "== rows for benchmarks/README.md"
grep -h -A1 "benchmarks/README.md row:" "$out"/*.log 2>/dev/null | grep "^|"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== failed: ${failed[*]}"
    exit 1
fi
echo "== done: $steps; results in $out"
