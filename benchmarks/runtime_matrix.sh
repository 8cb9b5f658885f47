#!/usr/bin/env bash
# benchmarks/RESULTS.md: every shipped model in every runtime. Each shipped fp32 ONNX file is
# exported again with its LiteRT files (they are not shipped: size) into runs/edge/<model>,
# the int8 file re-made the same way (same calibration; the script checks that both graphs
# are the shipped ones: only provenance metadata differs), then `cifarkit bench --runtime all`
# measures them.
#   benchmarks/runtime_matrix.sh            # CIFARKIT_DATA or ../shared/data/cifar10
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${CIFARKIT_DATA:-../shared/data/cifar10}
CK=${CIFARKIT:-.venv/bin/cifarkit}
models=()
for card in exported/*/card.json; do
  m=$(basename "$(dirname "$card")")
  models+=("runs/edge/$m")
  "$CK" export "exported/$m/model.fp32.onnx" --out "runs/edge/$m" --precision fp32,int8 \
    --format onnx,tflite --data "$DATA" --reduce-range --no-bench --runs-in none
  for p in fp32 int8; do  # the graph (weights, ops) must be the shipped one
    .venv/bin/python - "exported/$m/model.$p.onnx" "runs/edge/$m/model.$p.onnx" <<'PY'
import sys, onnx
a, b = (onnx.load(f).graph.SerializeToString() for f in sys.argv[1:])
print(f"{sys.argv[2]}: graph {'identical to' if a == b else 'DIFFERENT from'} {sys.argv[1]}")
sys.exit(a != b)
PY
  done
done
"$CK" bench "${models[@]}" --runtime all --data "$DATA" \
  --json benchmarks/results/bench-cpu.json --markdown benchmarks/RESULTS.md
