#!/usr/bin/env bash
# The GPU check: every CUDA path of kdnas once, and the measurements that decide the next GPU
# work, stopped by itself within 6 minutes of its start (python start-up included).
#
#   bash benchmarks/gpu_check.sh [FOLDER]         # on a CUDA machine
#   bash benchmarks/gpu_check.sh --cpu [FOLDER]   # the same sections on the CPU at toy sizes
#
# Results go to FOLDER, else to $OUT when it is set (the GPU machine's output folder), else
# to ./gpu-check: gpu_check.json (every figure of every section) and gpu_check.log (the
# printed lines and the tails of the subprocesses' output). The sections, their criteria and
# how to read the figures: benchmarks/gpu_check.py and docs/training.md ("The GPU check").
#
# Python: $PYTHON when set; otherwise the first of .venv/bin/python, python3 and python whose
# torch sees a CUDA device (with --cpu: the first that has torch). A .venv with the CPU wheel
# therefore does not hide the machine's own CUDA torch. kdnas is read from src/.
# Without any CUDA torch (and without --cpu) it prints SKIP with what it found and exits 3:
# nothing was checked, which must not read as a success. Otherwise the exit code is the
# number of FAILed sections (124: stopped at the time limit; the JSON has what was done).
set -uo pipefail
STARTED="$(date +%s.%N)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { echo "usage: bash benchmarks/gpu_check.sh [--cpu] [FOLDER]" >&2; }
CPU=0
FOLDER=""
for argument in "$@"; do
    case "$argument" in
        --cpu) CPU=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage; exit 2 ;;
        *)
            if [ -n "$FOLDER" ]; then usage; exit 2; fi
            FOLDER="$argument" ;;
    esac
done
FOLDER="${FOLDER:-${OUT:-gpu-check}}"
if ! mkdir -p "$FOLDER" 2>/dev/null; then
    echo "gpu_check: cannot create the output folder $FOLDER" >&2
    exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ -n "${PYTHON:-}" ]; then CANDIDATES=("$PYTHON")
else
    CANDIDATES=()
    [ -x .venv/bin/python ] && CANDIDATES+=(.venv/bin/python)
    for name in python3 python; do
        command -v "$name" >/dev/null 2>&1 && CANDIDATES+=("$(command -v "$name")")
    done
fi
# What each candidate's torch is: "cuda N" (devices it sees), "cpu", or "no torch".
probe() {
    timeout 120 "$1" -c 'import torch
print(f"cuda {torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")' \
        2>/dev/null || echo "no torch"
}
PY=""
FOUND=""
for candidate in "${CANDIDATES[@]}"; do
    seen="$(probe "$candidate" | tail -n 1)"
    FOUND+="$candidate: $seen; "
    case "$seen" in
        cuda*) PY="$candidate"; break ;;
        cpu) if [ "$CPU" = 1 ]; then PY="$candidate"; break; fi ;;
    esac
done
if [ -z "$PY" ]; then
    if [ "$CPU" = 1 ]; then
        echo "gpu_check: no python with torch found (${FOUND:-no python})" >&2
        exit 2
    fi
    echo "SKIP gpu_check: no CUDA device visible to any python (${FOUND:-no python found});" \
        "nothing checked. --cpu runs the CPU smoke run." | tee "$FOLDER/gpu_check.log"
    exit 3
fi
# kdnas's own dependencies must be importable by that python (nothing can be installed on a
# machine without a package index): say which are missing, before any time is spent.
MISSING="$("$PY" -c 'import importlib.util as u
print(" ".join(m for m in ("numpy", "scipy", "sklearn", "rich", "matplotlib", "PIL")
               if u.find_spec(m) is None))' 2>&1)"
if [ -n "$MISSING" ]; then
    echo "gpu_check: $PY lacks kdnas dependencies: $MISSING" | tee "$FOLDER/gpu_check.log" >&2
    exit 2
fi
echo "gpu_check: $PY (${FOUND% ; })"

# Six minutes from the start: the sections get until 320 s (each starts only if its estimate
# fits), the process is stopped at 350 s whatever happens.
ELAPSED="$(awk -v s="$STARTED" -v n="$(date +%s.%N)" 'BEGIN { printf "%d", n - s }')"
if [ "$CPU" = 1 ]; then MODE=(--device cpu --quick); else MODE=(--device cuda); fi
timeout --kill-after=5 "$((350 - ELAPSED))" "$PY" benchmarks/gpu_check.py "${MODE[@]}" \
    --out "$FOLDER" --started-at "$STARTED" --budget 320
CODE=$?
if [ "$CODE" = 124 ] || [ "$CODE" = 137 ]; then
    echo "gpu_check: stopped at the 6-minute limit; $FOLDER/gpu_check.json has the sections done" \
        | tee -a "$FOLDER/gpu_check.log"
fi
exit "$CODE"
