#!/usr/bin/env bash
# Extract VGGish audio and VGG-19 visual features from video files, in the AVE layout, e.g.
#   bash extract_features.sh my_videos/ --out my_data
#   bash extract_features.sh clip1.mp4 clip2.mkv --out my_data --weights random
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run extract_features.sh tools/extract_features.py "$@"
