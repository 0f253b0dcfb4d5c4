#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on CPU, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# llama.cpp's OpenAI-compatible server for the remote-engine tests (tests/remote), built once.
bash scripts/anchor.sh
# Browser tests drive Debian's Chromium through Playwright; never a downloaded browser.
if ! command -v chromium >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ruff check .
ruff format --check .
mypy  # the engine and the tasks ([tool.mypy] in pyproject.toml)
python -m pytest -q "$@"
