#!/usr/bin/env bash
# CUDA checks and timings on one GPU, in one go (about 7 minutes on an H100):
#   1. the CUDA tests (tests/test_cuda.py), while a full-size synthetic set is generated;
#   2. a full 200-epoch fully-supervised run on it, evaluating every epoch (timed);
#   3. tools/benchmark.py on CUDA (float32 and bf16).
# Results go to $OUT (default runs/gpu_check). Usage: bash tools/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu_check}
DATA=${DATA:-/tmp/ave_full}
RUN=${RUN:-/tmp/gpu_check_run}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
[ -f "$DATA/visual_feature_noisy.h5" ] || "$PY" -m dataset.synthetic --out "$DATA" --seed 0 \
  > "$OUT/generate.log" 2>&1 &
timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 4
wait
tail -n 1 "$OUT/generate.log" 2>/dev/null
SECONDS=0
timeout "${RUN_LIMIT:-280}" bash supv_train.sh --data_root "$DATA" --snapshot_pref "$RUN" \
  --n_epoch 200 --no_progress --overwrite --tb_images_every 0 > "$OUT/supervised_200.log" 2>&1
echo "200-epoch run: exit $?, ${SECONDS} s"
tail -n 5 "$OUT/supervised_200.log"
cp "$RUN/metrics.json" "$OUT/supervised_200_metrics.json" 2>/dev/null
timeout "${BENCH_LIMIT:-80}" "$PY" tools/benchmark.py --device cuda --steps 5 \
  --out "$OUT/benchmark_cuda.json" | tail -n 8
