#!/usr/bin/env bash
# Train one setting once per seed and write a table of val/test accuracy with mean +- std, e.g.
#   bash multiseed.sh --setting supervised --seeds 1 2 3 --snapshot_pref runs/seeds --data_root data
# Any other flag of supv_main.py / weak_main.py is passed to every run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=multiseed.sh exec "$PYTHON" "$here/tools/multiseed.py" "$@"
