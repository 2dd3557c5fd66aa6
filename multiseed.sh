#!/usr/bin/env bash
# Train one setting once per seed and write a table of val/test accuracy with mean +- std, e.g.
#   bash multiseed.sh --setting supervised --seeds 1 2 3 --snapshot_pref runs/seeds --data_root data
# Any other flag of supv_main.py / weak_main.py is passed to every run.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run multiseed.sh tools/multiseed.py "$@"
