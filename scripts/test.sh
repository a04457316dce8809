#!/usr/bin/env bash
# Quick start, command 2: set up and run the test suite (slow checks excluded: pytest -m slow).
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
.venv/bin/python -m pytest -q "$@"
