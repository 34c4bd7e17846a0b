#!/usr/bin/env bash
# One GPU check for a person with a CUDA machine: the gpu-marked tests, both benchmarks on
# CUDA, a quickstart with train.device=cuda, and one under runner=ray at half a GPU per
# trial; then one summary table (step, status, seconds, what it measured). Meant to finish
# in under 8 minutes on one recent GPU.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]      (default outputs/gpu_check)
#
# On a machine without CUDA it says so and exits 0, so it can sit in any CI.
# Uses the python on PATH (activate the project's venv first) or $PYTHON.
set -u

PYTHON="${PYTHON:-python}"
OUT="${1:-outputs/gpu_check}"
cd "$(dirname "$0")/.."

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to check"
  exit 0
fi

mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
SUMMARY="$OUT/summary.tsv"
printf "step\tstatus\tseconds\tresult\n" > "$SUMMARY"
"$PYTHON" -c "import torch; print('gpu_check on', torch.cuda.get_device_name(0), 'torch', torch.__version__)"

# run STEP TIMEOUT_S CMD...: runs one step under a time limit, logs to $OUT/STEP.log.
run() {
  local step="$1" limit="$2"
  shift 2
  local start=$SECONDS status
  if timeout "$limit" "$@" > "$OUT/$step.log" 2>&1; then status=ok; else status="FAILED($?)"; fi
  printf "%s\t%s\t%s\t" "$step" "$status" "$((SECONDS - start))" >> "$SUMMARY"
  echo "  $step: $status in $((SECONDS - start)) s (log $OUT/$step.log)"
}

run gpu_tests 150 "$PYTHON" -m pytest -m gpu -q tests
tail -n 1 "$OUT/gpu_tests.log" | tr -d '\n' >> "$SUMMARY"; echo >> "$SUMMARY"

run kernels_bench 120 "$PYTHON" benchmarks/kernels.py --device cuda --min-run-time-s 0.05 \
  --repeats 3 --out "$OUT/kernels.json"
"$PYTHON" - "$OUT/kernels.json" >> "$SUMMARY" <<'EOF' || echo "-" >> "$SUMMARY"
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
best = {(r["pattern"], r["dtype"], r["batch"]): f"{r['best']} {r['speedups'].get(r['best'], 1):.2f}x"
        for r in rows}
print("; ".join(f"{p} {d} b{b}: {v}" for (p, d, b), v in best.items()))
EOF

run export_bench 150 "$PYTHON" benchmarks/export.py --device cuda --models mlp \
  --min-run-time-s 0.1 --repeats 3 --out "$OUT/export.json"
"$PYTHON" - "$OUT/export.json" >> "$SUMMARY" <<'EOF' || echo "-" >> "$SUMMARY"
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
print("; ".join(f"{c['model']} {c['pattern']} {c.get('dtype', '')} b{b}: {s['median']:.2f}x"
                for c in cases for b, s in c["speedups"].items()))
EOF

run quickstart_cuda 90 "$PYTHON" -m sparsearch +experiment=quickstart train.device=cuda \
  search.n_trials=6 hydra.run.dir="$OUT/quickstart_cuda"
grep -m1 "Pareto-optimal" "$OUT/quickstart_cuda.log" | tr -d '\n' >> "$SUMMARY"; echo >> "$SUMMARY"

run quickstart_ray_half_gpu 150 "$PYTHON" -m sparsearch +experiment=quickstart runner=ray \
  train.device=cuda "runner.resources_per_trial={cpu: 1, gpu: 0.5}" search.n_trials=6 \
  hydra.run.dir="$OUT/quickstart_ray"
grep -m1 "Pareto-optimal" "$OUT/quickstart_ray_half_gpu.log" | tr -d '\n' >> "$SUMMARY"
echo >> "$SUMMARY"

echo
column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
! grep -q "FAILED" "$SUMMARY"
