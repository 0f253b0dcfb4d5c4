"""A fresh app process on a loopback port, as a user starts it (`python app.py`), for the scripts
that drive it through its API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The app started with `env_extra` on a free port: its process and URL."""
    port = free_port()
    env = {**os.environ, **(env_extra or {}), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    return app, f"http://127.0.0.1:{port}/"


def wait_for_page(app: subprocess.Popen, url: str, timeout_s: float = 120) -> None:
    """Until the page answers (the moment a visitor could first use it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if app.poll() is not None:
                raise RuntimeError("the app exited during start-up") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not serve its page within {timeout_s:.0f} s") from None
            time.sleep(0.1)


def stop(app: subprocess.Popen) -> None:
    app.terminate()
    app.wait(30)
