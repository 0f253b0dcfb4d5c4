"""A fresh app process, as a user starts it after set-up: it warms the default model at start and
answers the first request quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_the_first_request_answers_within_ten_seconds_of_the_page_opening(unused_port):
    from gradio_client import Client

    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(unused_port)}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{unused_port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"app did not serve: {server.stderr.read() if server.poll() is not None else ''}")
                time.sleep(0.2)
        opened = time.perf_counter()
        client = Client(url, verbose=False)
        text, metrics = client.predict("Where is the station?", "en", "fr", max_new_tokens=16, api_name="/translate")
        answered = time.perf_counter() - opened
        print(f"first request answered {answered:.1f} s after the page opened ({metrics['new_tokens']} tokens)")
        assert text.strip() and answered < 10
        # Served and idle, it leaves the cores alone (Gradio's queue alone polled at ~14% of a core)
        time.sleep(2)
        before, start = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(4)
        idle = (_cpu_seconds(server.pid) - before) / (time.monotonic() - start)
        print(f"idle: {idle:.1%} of a core")
        assert idle < 0.06
    finally:
        server.terminate()
        server.wait(30)


def _cpu_seconds(pid: int) -> float:
    """User and system time of process `pid`, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
