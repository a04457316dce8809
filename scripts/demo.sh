#!/usr/bin/env bash
# Quick start, command 1: set up and run the main job, a real multi-fidelity NAS with
# knowledge distillation on the embedded dataset (about 5 minutes on 2 CPU cores).
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
.venv/bin/kdnas demo "$@"
