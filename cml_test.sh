#!/usr/bin/env bash
# Localize the test events of the match splits with a cross-modality checkpoint, e.g.
#   bash cml_test.sh --data_root data --resume runs/cml_a2v/last.pth.tar --direction v2a
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/launch.sh"
run cml_test.sh cml_main.py --evaluate "$@"
