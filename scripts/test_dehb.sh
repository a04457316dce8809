#!/usr/bin/env bash
# DEHB's adapter tests, in an environment of their own: dehb 0.1.2 requires numpy < 2, which
# the main .venv does not have. Makes .venv-dehb (torch==2.13.0 named in the same pip command
# as kdnas, so pip never swaps in another torch build) and runs tests/peers/test_adapters_dehb.py
# and the features-encoding tests (DEHB's rows; the other peers' skip there) with DEHB
# required: a missing dehb fails the run instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-dehb/bin/python ] || python3 -m venv .venv-dehb
if .venv-dehb/bin/python -c "import torch, dehb" 2>/dev/null; then
    .venv-dehb/bin/pip install -q -e ".[dehb]" pytest pytest-timeout
else
    .venv-dehb/bin/pip install -q "torch==2.13.0" -e ".[dehb]" pytest pytest-timeout
fi
# dehb 0.1.2 calls ConfigSpace API that ConfigSpace 1.x deprecates, thousands of times.
KDNAS_REQUIRE=dehb .venv-dehb/bin/python -m pytest -q -W "ignore::DeprecationWarning" \
    tests/peers/test_adapters_dehb.py tests/peers/test_features_encoding.py "$@"
