#!/usr/bin/env bash
# Train a cross-modality localization matcher (docs/cml.md); any flag of cml_main.py can
# follow, e.g.
#   bash cml_train.sh --data_root data --direction a2v --snapshot_pref runs/cml_a2v
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run cml_train.sh cml_main.py "$@"
