#!/usr/bin/env bash
# The README's first command; see `bash demo.sh --help`.
set -euo pipefail
usage="usage: bash demo.sh [training flags...]

On a machine with only Python 3.10+ (CPU is enough):
  1. makes .venv and installs requirements.txt into it (once);
  2. writes a small synthetic AVE set (400 videos) to data/demo (once);
  3. trains fully-supervised and then weakly-supervised DMIN on it on the CPU (6 epochs
     each, a few minutes on 2 cores) into runs/demo_supervised and runs/demo_weak, and
     prints val/test accuracy.
Any flag given is passed to both trainings (see bash supv_train.sh --help), e.g.
  bash demo.sh --n_epoch 3"
for arg in "$@"; do
  if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then echo "$usage"; exit 0; fi
done
cd "$(dirname "$0")"
PY=.venv/bin/python
if ! { [ -x "$PY" ] && "$PY" -c 'import torch, h5py, yaml, tqdm, tensorboard, matplotlib, av' 2>/dev/null; }; then
  echo "== installing requirements into .venv"
  python3 -m venv .venv
  "$PY" -m pip install --quiet -r requirements.txt
fi
DATA=data/demo
if [ ! -f "$DATA/visual_feature_noisy.h5" ]; then
  echo "== writing a synthetic AVE set to $DATA"
  "$PY" -m dataset.synthetic --out "$DATA" --videos 400 --seed 0
fi
echo "== fully-supervised DMIN"
bash supv_train.sh --data_root "$DATA" --snapshot_pref runs/demo_supervised --n_epoch 6 \
  --device cpu --overwrite "$@"
echo "== weakly-supervised DMIN"
bash weak_train.sh --data_root "$DATA" --snapshot_pref runs/demo_weak --n_epoch 6 \
  --device cpu --overwrite "$@"
echo "== done: see runs/demo_supervised and runs/demo_weak (metrics.json, train.log);"
echo "   TensorBoard: .venv/bin/tensorboard --logdir runs"
