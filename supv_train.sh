#!/usr/bin/env bash
# Train fully-supervised DMIN; any flag of supv_main.py can follow, e.g.
#   bash supv_train.sh --data_root data --snapshot_pref runs/supervised
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=supv_train.sh exec "$PYTHON" "$here/supv_main.py" "$@"
