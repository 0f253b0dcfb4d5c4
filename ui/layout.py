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
    # delete_cache: every hour, the files Gradio copied for downloads (exports) that are a day old
    with gr.Blocks(title="Transformer Studio", delete_cache=(3600, 86400)) as demo:
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
    demo.queue(max_size=current.app_max_queue, default_concurrency_limit=current.app_concurrency)
    calm_queue(demo)
    return demo


# Gradio's queue looks for new events every 1 ms and for progress every 10 ms, even when idle: ~14% of
# a core here (measured), taken from the decode loop's two OpenMP threads, which then wait for each
# other at every barrier. Waking every 20 ms costs a request at most 20 ms before it starts.
QUEUE_POLL_S = 0.02


def calm_queue(demo: gr.Blocks) -> None:
    """Poll less often. The intervals are the queue's attributes, not a launch option; a Gradio without
    them keeps its own."""
    queue = getattr(demo, "_queue", None)
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        if hasattr(queue, name):
            setattr(queue, name, max(getattr(queue, name), QUEUE_POLL_S))
