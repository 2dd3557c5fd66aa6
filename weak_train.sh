#!/usr/bin/env bash
# Train a weakly-supervised method (MIL; DMIN unless --model says otherwise); any flag of
# weak_main.py can follow, e.g.
#   bash weak_train.sh --data_root data --snapshot_pref runs/weak
# NPROC=N trains on N processes (GPUs) through torchrun (tools/launch.sh).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
train weak_train.sh weak_main.py "$@"
