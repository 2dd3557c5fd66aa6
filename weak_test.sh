#!/usr/bin/env bash
# Evaluate a weakly-supervised checkpoint on the test split, e.g.
#   bash weak_test.sh --data_root data --resume runs/weak/model_epoch_..._best_model.pth.tar
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run weak_test.sh weak_main.py --evaluate "$@"
