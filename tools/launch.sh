# Sourced by the entry-point scripts (supv_train.sh, predict.sh, ...): which Python runs the
# program, and how.
#   run SCRIPT PROGRAM [flags...]     run PROGRAM (a path in the repository) with that Python
#   train SCRIPT PROGRAM [flags...]   the same, on NPROC processes (NPROC=N, N > 1) through
#                                     torchrun (tools/torchrun.py: one line and the failed
#                                     process's status when one fails): one per GPU (NCCL), or
#                                     CPU processes (gloo). Several machines: run torchrun
#                                     yourself (docs/scale.md).
# The Python is the repository's .venv if it has one, else python3; PYTHON=... overrides it.
# SCRIPT is the name the user ran: --help and error lines name it.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$( [ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3 )}"

check_packages() {
  # A missing package is one line saying how to install, not a traceback (about 30 ms).
  if ! "$python" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in
             ("torch", "numpy", "h5py", "yaml", "tqdm", "tensorboard", "matplotlib", "av")))' \
       2>/dev/null; then
    echo "error: $python lacks the packages this repository needs; install them once with" \
         "\`python3 -m venv $repo/.venv && $repo/.venv/bin/pip install -r $repo/requirements.txt\`" \
         "(bash demo.sh does it too)" >&2
    exit 2
  fi
}

run() {
  local script="$1" program="$2"
  shift 2
  check_packages
  DMIN_SCRIPT="$script" exec "$python" "$repo/$program" "$@"
}

train() {
  local nproc="${NPROC:-1}"
  if ! [[ "$nproc" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NPROC=$nproc is invalid: give the number of processes, e.g. NPROC=2" >&2
    exit 2
  fi
  if [ "$nproc" -gt 1 ]; then
    local script="$1" program="$2"
    shift 2
    check_packages
    DMIN_SCRIPT="$script" exec "$python" "$repo/tools/torchrun.py" "$nproc" "$repo/$program" "$@"
  fi
  run "$@"
}
