# Sourced by the quick-start scripts: make .venv and install kdnas into it.
# torch==2.13.0 is named in the same pip command as kdnas so pip never swaps in another
# torch build; a torch already in the venv (a CUDA build on a GPU machine, say) is kept.
# KDNAS_EXTRAS picks the extras (default: dev, what the test suite needs); CI adds the field's
# peers (field, syne-tune) so that their tests run there.
set -euo pipefail
extras="${KDNAS_EXTRAS:-dev}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q -e ".[$extras]"
else
    .venv/bin/pip install -q "torch==2.13.0" -e ".[$extras]"
fi
