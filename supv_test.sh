#!/usr/bin/env bash
# Evaluate a fully-supervised checkpoint on the test split, e.g.
#   bash supv_test.sh --data_root data --resume runs/supervised/model_epoch_..._best_model.pth.tar
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run supv_test.sh supv_main.py --evaluate "$@"
