#!/usr/bin/env bash
# Extract VGGish audio and VGG-19 visual features from video files, in the AVE layout, e.g.
#   bash extract_features.sh my_videos/ --out my_data
#   bash extract_features.sh clip1.mp4 clip2.mkv --out my_data --weights random
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
DMIN_SCRIPT=extract_features.sh exec "$PYTHON" "$here/tools/extract_features.py" "$@"
