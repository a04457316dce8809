#!/usr/bin/env bash
# Quick start, command 2: set up and run the test suite exactly as CI does. The main suite runs
# in .venv with the field's peers and the ONNX checker installed (kdnas[field],
# kdnas[syne-tune], kdnas[onnx]) so that their tests run, then DEHB's tests in an environment
# of their own (scripts/test_dehb.sh: dehb needs numpy < 2). Slow checks are excluded (run them with: .venv/bin/python -m pytest -m slow).
# Arguments go to the main suite's pytest, and then DEHB's environment is left out.
# Under CI (CI=true), KDNAS_REQUIRE (tests/conftest.py) turns a skip for want of a peer, Ray,
# the parquet writer, onnxruntime or the paper's benchmark (../shared/data/mf_nas_kd) into a failure.
set -euo pipefail
export KDNAS_EXTRAS="${KDNAS_EXTRAS:-dev,field,syne-tune,onnx}"
if [ "${CI:-}" = "true" ]; then
    export KDNAS_REQUIRE="${KDNAS_REQUIRE:-optuna,smac,syne-tune,ray,fastparquet,onnxruntime,mf_nas_kd}"
fi
source "$(dirname "$0")/_venv.sh"
.venv/bin/python -m pytest -q "$@"
if [ $# -eq 0 ]; then
    bash scripts/test_dehb.sh
fi
