"""The page: the title and the default model's warm-up line, a tab per installed task, the Lab,
the History; the MCP resources; the queue."""

from __future__ import annotations

from collections.abc import Mapping

import gradio as gr

from engine import DEFAULT_MODEL, WarmUp, settings
from tasks import Task

from .history import browser_history, history_tab
from .lab import lab_tab
from .resources import serve_resources
from .task_tab import task_tab


def warm_banner(warm_up: WarmUp) -> tuple[gr.Markdown, gr.Timer]:
    """The default model's warm-up as a line under the title, polled until it is done."""
    state = warm_up.state()
    if state.phase == "ready":
        line = f"Ready: {state.message} ({state.seconds:.1f} s after start)."
    elif state.phase == "failed":
        line = f"The default model could not be prepared: {state.message}"
    else:
        line = f"Preparing the default model: {state.message} ({state.seconds:.0f} s)…"
    return gr.Markdown(line, visible=True), gr.Timer(active=not state.done)


def build(tasks: Mapping[str, Task], warm_up: WarmUp) -> gr.Blocks:
    """The Blocks: one tab and one endpoint per task, ordered by their tab's `order`, then name."""
    with gr.Blocks(title="Transformer Studio") as demo:
        gr.Markdown(
            "# Transformer Studio\nDense vs sparse attention at any precision, measured on every request. "
            f"The default model ({DEFAULT_MODEL}) is tiny and runs offline: fast to measure, often wrong."
        )
        history = browser_history()
        warm_line = gr.Markdown(visible=False, elem_classes="warm-line")
        warm_poll = gr.Timer(1.0)
        for start in (warm_poll.tick, demo.load):
            start(lambda: warm_banner(warm_up), None, [warm_line, warm_poll], queue=False, api_visibility="private")
        for task in sorted(tasks.values(), key=lambda task: (task.tab.order, task.name)):
            task_tab(task, history)
        lab_tab()
        history_tab(demo, history)
        serve_resources()
    current = settings()
    return demo.queue(max_size=current.app_max_queue, default_concurrency_limit=current.app_concurrency)
