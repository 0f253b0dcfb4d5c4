"""Files a visitor downloads: texts written where Gradio can serve them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr


def exported(files: dict[str, str]) -> list[gr.DownloadButton]:
    """Each text as a file of its name (in a folder of its own; Gradio serves it from its cache), shown."""
    folder = Path(tempfile.mkdtemp(prefix="studio-export-"))
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [gr.DownloadButton(value=str(folder / name), visible=True) for name in files]
