#!/usr/bin/env bash
# Predict events with a checkpoint of either setting and write them as JSON, e.g.
#   bash predict.sh --checkpoint runs/supervised/model_epoch_..._best_model.pth.tar \
#                   --data_root data --split test --out preds.json --plot plots
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run predict.sh tools/predict.py "$@"
