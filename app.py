"""Transformer Studio: one tab per installed task plus the Lab, over the shared engine (the UI is ui/).

`python app.py` serves it (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT as usual); `--mcp` or
STUDIO_MCP=1 also serves every endpoint as an MCP tool. Tasks are found through the entry-point
group `transformer_studio.tasks` (pyproject.toml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from engine import DEFAULT_MODEL, SettingsError, WarmUp, installed_tasks, settings
from ui import build

try:
    SETTINGS = settings()
except SettingsError as exc:  # the one-line reason, not a traceback
    sys.exit(f"error: {exc}")
CSS = (Path(__file__).parent / "assets" / "style.css").read_text()
WARM_UP = WarmUp(DEFAULT_MODEL)  # started by launch(): the first visitor finds the default model ready
demo = build(installed_tasks(), WARM_UP)


def launch(**kwargs) -> tuple:
    """Serve the app; theme and CSS go to launch() in Gradio 6."""
    mcp = "--mcp" in sys.argv[1:] or SETTINGS.mcp
    if WARM_UP.state().phase == "waiting":
        WARM_UP.start()
    options = {"theme": gr.themes.Soft(), "css": CSS, "mcp_server": mcp or None, **kwargs}
    return demo.launch(**options)


if __name__ == "__main__":
    launch()
