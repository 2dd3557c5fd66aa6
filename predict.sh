#!/usr/bin/env bash
# Predict events with a checkpoint of either setting and write them as JSON, e.g.
#   bash predict.sh --checkpoint runs/supervised/model_epoch_..._best_model.pth.tar \
#                   --data_root data --split test --out preds.json --plot plots
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=predict.sh exec "$PYTHON" "$here/tools/predict.py" "$@"
