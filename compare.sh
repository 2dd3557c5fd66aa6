#!/usr/bin/env bash
# The comparison table: each method in each setting over N seeds, under one protocol, e.g.
#   bash compare.sh --data_root data --models dmin avel psp cmran cmbs --seeds 1 2 3
# Any other flag of supv_main.py / weak_main.py (e.g. --n_epoch) is passed to every run; the
# same command again continues an interrupted comparison.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run compare.sh tools/compare.py "$@"
