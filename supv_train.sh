#!/usr/bin/env bash
# Train fully-supervised DMIN; any flag of supv_main.py can follow, e.g.
#   bash supv_train.sh --data_root data --snapshot_pref runs/supervised
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The repo's .venv (made by demo.sh) if present, else python3; override with PYTHON=...
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
# NPROC=N trains on N processes of this machine through torchrun: one per GPU (NCCL), or
# CPU processes (gloo). Several machines: run torchrun yourself (README, "Several GPUs").
NPROC="${NPROC:-1}"
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NPROC=$NPROC is invalid: give the number of processes, e.g. NPROC=2" >&2
  exit 2
fi
if [ "$NPROC" -gt 1 ]; then
  DMIN_SCRIPT=supv_train.sh exec "$PYTHON" -m torch.distributed.run --standalone \
    --nproc_per_node "$NPROC" "$here/supv_main.py" "$@"
fi
DMIN_SCRIPT=supv_train.sh exec "$PYTHON" "$here/supv_main.py" "$@"
