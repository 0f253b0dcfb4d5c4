"""Files a visitor downloads: texts written where Gradio can serve them."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr

# Gradio copies a returned file into its own cache as the event ends, so ours are only needed a moment;
# older ones are removed at each export (Gradio's cache empties itself: ui.layout's delete_cache)
KEEP_S = 600.0
_FOLDER = Path(tempfile.gettempdir()) / "studio-exports"


def exported(files: dict[str, str]) -> list[gr.DownloadButton]:
    """Each text as a file of its name (in a folder of its own), shown as a download."""
    _prune()
    folder = _FOLDER / uuid.uuid4().hex
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [gr.DownloadButton(value=str(folder / name), visible=True) for name in files]


def _prune() -> None:
    if not _FOLDER.is_dir():
        return
    old = time.time() - KEEP_S
    for folder in _FOLDER.iterdir():
        if folder.stat().st_mtime < old:
            shutil.rmtree(folder, ignore_errors=True)
