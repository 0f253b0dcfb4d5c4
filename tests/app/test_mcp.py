"""`python app.py --mcp` serves every endpoint as an MCP tool, described from the handlers' docstrings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mcp_flag_serves_every_endpoint_as_a_tool(unused_port):
    port = unused_port
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "app.py", "--mcp"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/mcp/schema", timeout=5) as response:
                    tools = {tool["name"]: tool for tool in json.load(response)}
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"app did not serve MCP: {server.stderr.read() if server.poll() is not None else ''}")
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(30)
    kinds = {name: tool["meta"]["mcp_type"] for name, tool in tools.items()}
    assert {name for name, kind in kinds.items() if kind == "tool"} == {
        "translate", "summarize", "chat", "classify", "generate_code", "benchmark", "frontier", "attention_map",
    }  # fmt: skip
    assert {name for name, kind in kinds.items() if kind == "resource"} == {"models", "patterns", "last_benchmark"}
    properties = tools["summarize"]["inputSchema"]["properties"]
    assert properties["attention"]["enum"] == ["dense", "sparse", "compare"]
    assert {"temperature", "top_p", "seed", "repetition_penalty", "block_size"} <= set(properties)
    assert "never executed" in tools["generate_code"]["description"]
    assert {"text", "layer", "head", "pattern", "budget"} <= set(tools["attention_map"]["inputSchema"]["properties"])
