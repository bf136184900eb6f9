#!/usr/bin/env bash
# Every GPU check of the fast path in one go, for a session or a user with a CUDA GPU:
# the CUDA-only tests, then both benchmarks (stock and fast in one run each). About 6-8 minutes
# on an H100, most of it torch.compile warm-up and the stock sampler.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # logs, JSON results and README rows (default runs/gpu_check)
#   FAST_BATCH=0 bash benchmarks/gpu_check.sh   # skip the second training run at the larger fast batch
#
# Needs torch (CUDA), transformers, pandas and pytest; the kit itself need not be installed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
py=${PYTHON:-python3}
fast_batch=${FAST_BATCH:-12}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$py" -c 'import torch, transformers' 2>/dev/null; then
    echo "gpu_check: $py cannot import torch and transformers; set PYTHON to the environment's python" >&2
    exit 2
fi
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA GPU; on a CPU run the two benchmark scripts alone" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"

failed=()
step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log it, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { failed+=("$name (exit $rc)"); echo "== $name failed: exit $rc"; }
}

step tests 300 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_fast_path.py
step train 420 "$py" benchmarks/train_throughput.py --out "$out/train.json"
if [ "$fast_batch" != 0 ]; then
    step train_fast_batch 420 "$py" benchmarks/train_throughput.py --fast-batch "$fast_batch" \
        --out "$out/train_fast_batch.json"
fi
step sample 420 "$py" benchmarks/sample_throughput.py --out "$out/sample.json"

echo
echo "== rows for benchmarks/README.md"
grep -h -A1 "benchmarks/README.md row:" "$out"/*.log | grep "^|"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== failed: ${failed[*]}"
    exit 1
fi
echo "== all GPU checks ran; results in $out"
