#!/usr/bin/env bash
# Evaluate a fully-supervised checkpoint on the test split, e.g.
#   bash supv_test.sh --data_root data --resume runs/supervised/model_epoch_..._best_model.pth.tar
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=supv_test.sh exec "$PYTHON" "$here/supv_main.py" --evaluate "$@"
