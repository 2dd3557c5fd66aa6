# Sourced by supv_train.sh and weak_train.sh: start a training program, on NPROC processes.
#   train SCRIPT PROGRAM [flags...]
# runs PROGRAM (supv_main.py or weak_main.py) with the repo's .venv Python if present, else
# python3 (override with PYTHON=...). NPROC=N (N > 1) starts N processes of this machine
# through torchrun (tools/torchrun.py: one line and the failed process's status when one
# fails): one per GPU (NCCL), or CPU processes (gloo). Several machines: run torchrun
# yourself (README, "Several GPUs").
train() {
  local script="$1" program="$2"
  shift 2
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local python="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
  local nproc="${NPROC:-1}"
  if ! [[ "$nproc" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NPROC=$nproc is invalid: give the number of processes, e.g. NPROC=2" >&2
    exit 2
  fi
  if [ "$nproc" -gt 1 ]; then
    DMIN_SCRIPT="$script" exec "$python" "$here/tools/torchrun.py" "$nproc" "$here/$program" "$@"
  fi
  DMIN_SCRIPT="$script" exec "$python" "$here/$program" "$@"
}
