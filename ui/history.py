"""The History tab: this browser's last runs, kept in its own storage (gr.BrowserState), never on
the server, so no one else's inputs are ever shown to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import gradio as gr
import pandas as pd

from engine import Result, comparison_line, from_payload, metrics_line
from engine.api.export import runs_markdown

from .files import exported

HISTORY_RUNS = 50
HISTORY_COLUMNS = ["when", "task", "result"]


def browser_history() -> gr.BrowserState:
    return gr.BrowserState([], storage_key="studio-history")


def recorder(task: str) -> Callable[[dict | None, list | None], list]:
    def record(metrics: dict | None, runs: list | None) -> list:
        """The browser's run history, this run first (the History tab shows it)."""
        if not metrics:
            return runs or []
        final = from_payload(metrics)
        line = metrics_line(final) if isinstance(final, Result) else comparison_line(final)
        when = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return [{"when": when, "task": task, "result": line}, *(runs or [])][:HISTORY_RUNS]

    return record


def history_frame(runs: list | None) -> pd.DataFrame:
    return pd.DataFrame(runs or [], columns=HISTORY_COLUMNS)


def history_view(runs: list | None) -> tuple:
    """The table, and the runs as files to download (none while there are none)."""
    if not runs:
        return history_frame(runs), gr.DownloadButton(visible=False), gr.DownloadButton(visible=False)
    files = {"history.json": json.dumps(runs, indent=2, ensure_ascii=False), "history.md": runs_markdown(runs)}
    return history_frame(runs), *exported(files)


def history_tab(demo: gr.Blocks, history: gr.BrowserState) -> None:
    with gr.Tab("History"):
        gr.Markdown(
            f"This browser's last {HISTORY_RUNS} runs, newest first: each result's metrics line (kept in "
            "this browser's storage, not on the server)."
        )
        table = gr.Dataframe(history_frame([]), interactive=False, wrap=True, label="Runs")
        with gr.Row():
            clear = gr.Button("Clear the history")
            as_json_file = gr.DownloadButton("Download JSON", visible=False)
            as_markdown_file = gr.DownloadButton("Download Markdown", visible=False)
    shown = [table, as_json_file, as_markdown_file]
    history.change(history_view, history, shown, queue=False, api_visibility="private")
    demo.load(history_view, history, shown, queue=False, api_visibility="private")
    clear.click(list, None, history, queue=False, api_visibility="private")
