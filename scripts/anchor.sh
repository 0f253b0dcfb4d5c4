#!/usr/bin/env bash
# Install llama.cpp's Python server into .venv (.[anchor]): the decode benchmark's anchor and the real
# OpenAI-compatible server of the remote-engine tests.
#
# Built portable (AVX2/FMA/F16C, GGML_NATIVE=OFF) into a wheel folder of our own: pip's wheel cache
# keys a build by its source archive alone, so a native build made on an AVX-512 machine was reused
# on an AVX2 one, where its server died on the first request (illegal instruction). Compiled once,
# ~10 min on 2 cores; every later setup on any x86-64 machine with AVX2 installs the same wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${XDG_CACHE_HOME:-$HOME/.cache}/transformer-studio/wheels-avx2
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir \
        -w "$WHEELS" "llama-cpp-python>=0.3"
fi
# --prefer-binary: our wheel, not a newer source release that would be compiled natively again.
.venv/bin/python -m pip install -q --prefer-binary --find-links "$WHEELS" -e ".[dev,anchor]"
