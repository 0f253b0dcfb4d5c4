"""A real llama.cpp server (llama-cpp-python's OpenAI-compatible server) on a loopback port, serving
the embedded model's GGUF, and registry entries that name a server. Never a mock of it.

Tests that use it are marked `llama_server`: a developer without llama-cpp-python skips them
(`-m "not llama_server"`, or they skip themselves); in CI (CI=true) a missing server fails them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from ports import free_port

from engine.models.embedded import locate_packaged_file
from engine.models.registry import DEFAULT_MODEL, get_spec

SERVED_NAME = "smollm2"
REMOTE = "llamacpp-smollm2"  # the registry name the tests give it


@dataclass
class LlamaServer:
    process: subprocess.Popen
    url: str  # the OpenAI base URL, http://127.0.0.1:PORT/v1
    log: Path

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def start_server(log: Path) -> LlamaServer:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python[server] is not installed: scripts/test.sh installs it (.[anchor])")
        pytest.skip("llama-cpp-python[server] is not installed (bash scripts/anchor.sh)")
    port = free_port()
    gguf = locate_packaged_file(get_spec(DEFAULT_MODEL).location)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
        "--logits_all", "true",  # top log-probabilities, which classification reads
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = LlamaServer(process, f"http://127.0.0.1:{port}/v1", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama.cpp's server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{server.url}/models", timeout=1).close()
        except OSError:
            time.sleep(0.2)
            continue
        _first_token(server)
        return server
    server.stop()
    pytest.fail(f"llama.cpp's server did not answer within 120 s:\n{log.read_text()[-2000:]}")


def _first_token(server: LlamaServer) -> None:
    """One real completion before any test: a server that answers /models can still die on its first
    computation (a build for another CPU dies of SIGILL, exit -4), which every test would then report
    as a dropped connection."""
    body = json.dumps({"model": SERVED_NAME, "prompt": "Hello", "max_tokens": 1}).encode()
    request = urllib.request.Request(f"{server.url}/completions", body, {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=60).close()
    except OSError as exc:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(5)
        code = server.process.poll()
        server.stop()
        reason = " (SIGILL: a build for another CPU; see scripts/anchor.sh)" if code == -signal.SIGILL else ""
        pytest.fail(f"llama.cpp's server failed its first completion ({exc}; exit {code}{reason}):\n"
                    f"{server.log.read_text()[-2000:]}")  # fmt: skip


def registry_text(name: str, url: str, extra: str = "") -> str:
    """A STUDIO_MODELS entry for a server at `url` serving the embedded model."""
    return (
        f'[[model]]\nname = "{name}"\nsource = "openai"\nlocation = "{url}"\n'
        f'served_name = "{SERVED_NAME}"\nfamily = "causal"\n{extra}\n'
    )
