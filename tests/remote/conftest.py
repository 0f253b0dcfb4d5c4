"""Fixtures: one llama.cpp server for the session, and a registry naming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_server import REMOTE, LlamaServer, registry_text, start_server


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Iterator[LlamaServer]:
    server = start_server(tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def remote_registry(llama_server, tmp_path, studio_env) -> Path:
    """STUDIO_MODELS naming the server (the built-in models stay beside it)."""
    path = tmp_path / "models.toml"
    path.write_text(registry_text(REMOTE, llama_server.url))
    studio_env("STUDIO_MODELS", str(path))
    return path
