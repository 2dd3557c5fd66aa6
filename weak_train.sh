#!/usr/bin/env bash
# Train weakly-supervised DMIN (MIL); any flag of weak_main.py can follow, e.g.
#   bash weak_train.sh --data_root data --snapshot_pref runs/weak
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=weak_train.sh exec "$PYTHON" "$here/weak_main.py" "$@"
