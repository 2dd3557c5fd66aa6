#!/usr/bin/env bash
# Train a fully-supervised method (DMIN unless --model says otherwise); any flag of
# supv_main.py can follow, e.g.
#   bash supv_train.sh --data_root data --snapshot_pref runs/supervised
# NPROC=N trains on N processes (GPUs) through torchrun (tools/launch.sh).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
train supv_train.sh supv_main.py "$@"
