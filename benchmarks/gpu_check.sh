#!/usr/bin/env bash
# The GPU check: every CUDA path of kdnas once, in under five minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine (skips with a message elsewhere)
#   bash benchmarks/gpu_check.sh --cpu      # the same steps on the CPU at toy sizes (smoke run)
#
# Steps (each PASS/FAIL/SKIP, all figures printed; at most 8 result files, the whole output in
# gpu_check.log, under $GPU_CHECK_OUT, default ./gpu-check, or $OUT/gpu-check when $OUT is set):
#   1. benchmarks/gpu_check.py: bf16 autocast + channels-last training against float32, every
#      loss under autocast against float32, the teacher cache filled and served on the GPU,
#      a Ray task with a GPU (skipped without Ray);
#   2. benchmarks/train_throughput.py: the trainer against a conventional DataLoader loop on
#      CIFAR-shaped data (ratio);
#   3. kdnas train --nproc 1 (DDP path, checkpoints) on the digits, and --nproc 2 when the
#      machine has two GPUs or more; a resume of the finished run;
#   4. kdnas train --stream on a generated JPEG folder (decoding workers, pinned memory);
#   5. benchmarks/gpu_check_defects.py, when it exists;
#   6. benchmarks/stream_throughput.py: decoding images/s with 8 workers against none.
# Python: $PYTHON, else .venv/bin/python when present, else python3; kdnas is read from src/.
# The exit code is the number of failed steps.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CPU=0
for argument in "$@"; do
    case "$argument" in
        --cpu) CPU=1 ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--cpu]" >&2; exit 2 ;;
    esac
done
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
RESULTS="${GPU_CHECK_OUT:-${OUT:+$OUT/gpu-check}}"
RESULTS="${RESULTS:-gpu-check}"
mkdir -p "$RESULTS"
: >"$RESULTS/gpu_check.log"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ "$CPU" = 1 ]; then
    DEVICE=cpu; GPUS=0
    echo "gpu_check: CPU smoke run (--cpu): toy sizes, no figure here says anything about a GPU"
else
    GPUS="$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)"
    if [ "$GPUS" = 0 ]; then
        echo "gpu_check: skipped: no CUDA device visible to $PY (run with --cpu for the CPU smoke run)"
        exit 0
    fi
    DEVICE=cuda
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

# Five minutes in all: each step gets its own limit, cut to what is left of the total.
TOTAL=290
START=$SECONDS
FAILED=0
SUMMARY=""
step() {  # step NAME SECONDS COMMAND...
    local name="$1" limit="$2"; shift 2
    local left=$((TOTAL - (SECONDS - START)))
    if [ "$left" -lt 10 ]; then
        SUMMARY+="SKIP  $name (out of time)"$'\n'; return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit} s)"
    local began=$SECONDS
    echo "=== $name" >>"$RESULTS/gpu_check.log"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$RESULTS/gpu_check.log"
    local code=${PIPESTATUS[0]}
    local took=$((SECONDS - began))
    if [ "$code" = 0 ]; then SUMMARY+="PASS  $name (${took} s)"$'\n'
    else
        FAILED=$((FAILED + 1))
        [ "$code" = 124 ] && code="timeout"
        SUMMARY+="FAIL  $name (exit $code, ${took} s)"$'\n'
    fi
}

if [ "$CPU" = 1 ]; then
    step checks 240 "$PY" benchmarks/gpu_check.py --device cpu --quick --sections losses \
        --out "$RESULTS"
    step throughput 60 "$PY" benchmarks/train_throughput.py --quick --device cpu --threads 1 \
        --output "$RESULTS/train_throughput.json"
    TRAIN=(--resolution 8 --part 9 --epochs 1 --batch-size 32 --width-multiplier 0.25 --threads 1)
    STREAM=(--threads 1)
else
    step checks 150 "$PY" benchmarks/gpu_check.py --device cuda --out "$RESULTS"
    step throughput 60 "$PY" benchmarks/train_throughput.py --device cuda --images 4096 \
        --repeats 2 --workers 4 --output "$RESULTS/train_throughput.json"
    TRAIN=(--resolution 32 --part 1 --epochs 2 --batch-size 128)
    STREAM=(--workers 4)
fi
# kdnas train prints its whole result JSON; the file has it, the log keeps stderr only.
QUIET=(bash -c '"$@" >/dev/null' quiet)
DIGITS=(-m kdnas train --arch original --dataset digits "${TRAIN[@]}")
step ddp-nproc1 60 "${QUIET[@]}" "$PY" "${DIGITS[@]}" --nproc 1 --checkpoint-dir "$WORK/ddp1" \
    --output "$RESULTS/ddp-nproc1.json"
# Run again: every epoch is in the checkpoint, so it only evaluates (resumed_from_epoch > 0).
step ddp-resume 30 "${QUIET[@]}" "$PY" "${DIGITS[@]}" --nproc 1 --checkpoint-dir "$WORK/ddp1" \
    --output "$RESULTS/ddp-resume.json"
if [ "$GPUS" -ge 2 ]; then
    step ddp-nproc2 90 "${QUIET[@]}" "$PY" "${DIGITS[@]}" --nproc 2 --checkpoint-dir "$WORK/ddp2" \
        --output "$RESULTS/ddp-nproc2.json"
else
    SUMMARY+="SKIP  ddp-nproc2 (fewer than 2 GPUs)"$'\n'
fi
"$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from stream_throughput import make_folder
from pathlib import Path; make_folder(Path('$WORK/jpegs'), 256, 96, classes=4)"
step stream 60 "${QUIET[@]}" "$PY" -m kdnas train --arch original --dataset "$WORK/jpegs" --stream \
    --resolution 32 --epochs 1 --batch-size 32 --width-multiplier 0.25 "${STREAM[@]}" \
    --checkpoint-dir "$WORK/stream" --output "$RESULTS/stream.json"
if [ -f benchmarks/gpu_check_defects.py ]; then
    step defects 90 "$PY" benchmarks/gpu_check_defects.py
else
    SUMMARY+="SKIP  defects (benchmarks/gpu_check_defects.py is absent)"$'\n'
fi

if [ "$CPU" = 1 ]; then
    step stream-throughput 60 "$PY" benchmarks/stream_throughput.py --sizes 100 --side 64 \
        --resolution 32 --batch 32 --workers 2
else
    step stream-throughput 60 "$PY" benchmarks/stream_throughput.py --sizes 2000 --side 256 \
        --resolution 224 --workers 8
fi

{
echo "=== figures"
"$PY" - "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path

results = Path(sys.argv[1])
for name in ("ddp-nproc1", "ddp-resume", "ddp-nproc2", "stream"):
    path = results / f"{name}.json"
    if path.is_file():
        r = json.loads(path.read_text())
        print(f"{name}: {r['status']} on {r['device']}, valid_acc {r['valid_acc']}, "
              f"{r['train_time_s']:.1f} s training, resumed from epoch {r['resumed_from_epoch']}")
EOF
echo "=== summary ($((SECONDS - START)) s; results in $RESULTS)"
printf "%s" "$SUMMARY"
} 2>&1 | tee -a "$RESULTS/gpu_check.log"
exit "$FAILED"
