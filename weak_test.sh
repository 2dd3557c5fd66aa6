#!/usr/bin/env bash
# Evaluate a weakly-supervised checkpoint on the test split, e.g.
#   bash weak_test.sh --data_root data --resume runs/weak/model_epoch_..._best_model.pth.tar
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=weak_test.sh exec "$PYTHON" "$here/weak_main.py" --evaluate "$@"
