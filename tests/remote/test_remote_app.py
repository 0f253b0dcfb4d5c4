"""`python app.py` with a registry naming a real llama.cpp server: all five tasks on that model
through the API (gradio_client) with metrics, a local-vs-server comparison, and the server killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from llama_server import REMOTE, registry_text, start_server
from ports import free_port

from engine import DEFAULT_MODEL

pytestmark = [pytest.mark.llama_server, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
CALLS = {  # endpoint: the task's own inputs
    "/translate": ("Where is the station?", "en", "fr"),
    "/summarize": ("The town council met on Monday to discuss the new park. " * 4, "short"),
    "/chat": ("What is the capital of France?", [], "Answer briefly."),
    "/classify": ("Great service, I loved it!", "positive, negative, neutral"),
    "/generate_code": ("Reverse a string.", "python"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("llama-app") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(server, tmp_path_factory) -> Iterator[Client]:
    registry = tmp_path_factory.mktemp("registry") / "models.toml"
    registry.write_text(registry_text(REMOTE, server.url))
    port = free_port()
    env = {**os.environ, "STUDIO_MODELS": str(registry), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port)}  # fmt: skip
    log = tmp_path_factory.mktemp("app") / "app.log"
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 180
    client = None
    while client is None:
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the app did not start:\n{log.read_text()[-2000:]}")
            time.sleep(1)
    yield client
    process.kill()
    process.wait(10)


@pytest.mark.parametrize("endpoint", list(CALLS))
def test_every_task_runs_on_the_server_through_the_api(app, endpoint):
    output, metrics = app.predict(*CALLS[endpoint], model=REMOTE, max_new_tokens=16, api_name=endpoint)
    assert output
    assert (metrics["precision"], metrics["attention"]) == ("server", "server")
    assert metrics["device"].startswith("remote 127.0.0.1:") and metrics["ttft_ms"] > 0
    if endpoint != "/classify":
        assert metrics["new_tokens"] >= 2 and metrics["decode_tokens_per_s"] > 0


def test_local_engine_vs_server_on_one_chat_prompt(app):
    _, metrics = app.predict(*CALLS["/chat"], model=DEFAULT_MODEL, compare="model", compare_with=REMOTE, trials=2,
                             max_new_tokens=24, api_name="/chat")  # fmt: skip
    assert metrics["labels"] == {"a": DEFAULT_MODEL, "b": REMOTE}
    for side in ("a", "b"):
        assert metrics[side]["ttft_ms"] > 0 and metrics[side]["decode_tokens_per_s"] > 0
    assert metrics["comparison"]["decode"]["trials"] == 2


def test_a_killed_server_gives_a_clear_error_and_local_models_keep_serving(app, server):
    server.stop()
    with pytest.raises(AppError, match=rf"^{REMOTE} \(http://127.0.0.1:\d+/v1\): the connection failed"):
        app.predict(*CALLS["/chat"], model=REMOTE, api_name="/chat")
    answer, metrics = app.predict(*CALLS["/chat"], model=DEFAULT_MODEL, max_new_tokens=8, api_name="/chat")
    assert answer and metrics["precision"] != "server"
