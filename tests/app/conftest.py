"""The real app, served in this test process on the embedded model, and a gradio_client for it."""

from __future__ import annotations

import time

import pytest
from ports import free_port  # tests/ is on the path (pytest's rootdir conftest)


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def app_url():
    import app

    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    deadline = time.monotonic() + 120  # the tests time requests: let the start-up warm-up finish first
    while not app.WARM_UP.state().done and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app.WARM_UP.state().phase == "ready", app.WARM_UP.state()
    yield url.rstrip("/")
    app.demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)
