#!/usr/bin/env bash
# The GPU check of issue 6, as one call of the device tool (an H200 machine with JAX and
# onnxruntime but no TensorFlow, no Keras, no data and no internet):
#   1. fastnet trained on the GPU with Keras's JAX backend, the recipe's 10 epochs, once in
#      float32 and once with --mixed-precision: train time, per-epoch times, test accuracy;
#   2. the shipped models benchmarked with onnxruntime's CUDA provider, if its build has one
#      (cifarkit fails rather than fall back to the CPU, and the log says why).
#
# Here, first:  python benchmarks/device_kit.py pack --data ../shared/data/cifar10 --out .device
# Then:         device run, command "bash benchmarks/gpu_check.sh", carry [".device"],
#               timeout_s 540
# Back in $OUT: gpu-check.log, the runs' run.json and history.csv, the float32 model.keras
# (export it here to check its accuracy through ONNX), bench-cuda.json.
# Locally (a dry run on the CPU, TensorFlow hidden as on the device):
#   OUT=runs/gpu-check DRY_RUN=1 bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
OUT=${OUT:?set OUT to the folder for the results}
KIT=${KIT:-.device}
DATA=${DATA:-/tmp/cifar10}
TRAIN_ARGS=${TRAIN_ARGS:-}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-300}  # seconds per training run
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1

if [[ -n "${DRY_RUN:-}" ]]; then
    # As on the device: no TensorFlow (an import of it fails), a small subset, CPU only.
    shim=$(mktemp -d); mkdir "$shim/tensorflow"
    echo 'raise ImportError("TensorFlow is hidden for the gpu_check dry run")' \
        >"$shim/tensorflow/__init__.py"
    export PYTHONPATH="$shim:$PWD/toolkit" JAX_PLATFORMS=cpu
    TRAIN_ARGS="--limit 2000 --epochs 2 $TRAIN_ARGS" TRAIN_TIMEOUT=${TRAIN_TIMEOUT_DRY:-900}
    PY=${PYTHON:-python}
else
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
        "$KIT"/wheels/*.whl || { echo "installing the carried wheels failed"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD/toolkit"
    PY=python3
fi

echo "== machine"
date -u +%FT%TZ
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
nproc
$PY - <<'EOF'
import platform, jax, keras, numpy, onnxruntime as ort
print("python", platform.python_version(), "| jax", jax.__version__, jax.devices(),
      "| keras", keras.__version__, keras.backend.backend(), "| numpy", numpy.__version__)
print("onnxruntime", ort.__version__, ort.get_available_providers())
EOF

echo "== data"
$PY benchmarks/device_kit.py unpack "$KIT/cifar10.npz" "$DATA" || exit 1

train() {  # train NAME [extra args]: a fastnet run into /tmp/gpu-check/NAME
    local name=$1; shift
    echo "== train fastnet ($name)"
    timeout "$TRAIN_TIMEOUT" $PY -m cifarkit train fastnet --data "$DATA" --out "/tmp/gpu-check/$name" \
        --overwrite $TRAIN_ARGS "$@"
    echo "exit $?"
    cp "/tmp/gpu-check/$name/run.json" "$OUT/$name.run.json" 2>/dev/null
    cp "/tmp/gpu-check/$name/history.csv" "$OUT/$name.history.csv" 2>/dev/null
    $PY - "/tmp/gpu-check/$name/run.json" <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['device']}: {r['epochs']} epochs in {r['train_seconds']:.1f} s, "
      f"test top-1 {100 * r['test_accuracy']:.2f} %")
EOF
}
train fastnet-fp32
cp /tmp/gpu-check/fastnet-fp32/model.keras "$OUT/fastnet-fp32.model.keras" 2>/dev/null
train fastnet-mixed --mixed-precision

echo "== bench, CUDA provider"
timeout 150 $PY -m cifarkit bench --provider cuda --data "$DATA" --no-plots \
    --duration 0.5 --json "$OUT/bench-cuda.json"
echo "exit $?"
