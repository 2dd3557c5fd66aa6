#!/usr/bin/env bash
# Train weakly-supervised DMIN (MIL); any flag of weak_main.py can follow, e.g.
#   bash weak_train.sh --data_root data --snapshot_pref runs/weak
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
  DMIN_SCRIPT=weak_train.sh exec "$PYTHON" -m torch.distributed.run --standalone \
    --nproc_per_node "$NPROC" "$here/weak_main.py" "$@"
fi
DMIN_SCRIPT=weak_train.sh exec "$PYTHON" "$here/weak_main.py" "$@"
