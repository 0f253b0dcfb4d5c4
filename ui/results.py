"""Below each run: the metrics line, the compare view, the metrics JSON; and the wiring of a
model-bound event to them (one shared queue for every tab, then the panel and the history)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from engine import Result, comparison_line, from_payload, metrics_line, settings
from engine.api.export import as_json, as_markdown, trials_csv
from tasks.render import comparison_figure, comparison_table

from .files import exported
from .history import recorder
from .tokens import token_view

STOPPED = "**Stopped.** The output so far stays here; the engine dropped the request at its next step."


@dataclass(frozen=True)
class Panel:
    metrics: gr.JSON  # the event's last output: the result as JSON
    # metrics line, compare column, A output, B output, table, plot, token view, the three downloads
    views: list[gr.Component]
    history: gr.BrowserState  # the browser's runs, which each result joins

    @property
    def line(self) -> gr.Markdown:
        return self.views[0]


def show_results(metrics: dict | None) -> tuple:
    """Metrics line and the token view, or for a comparison the side-by-side view, from the typed result."""
    no_tokens, no_file = gr.HTML(visible=False), gr.DownloadButton(visible=False)
    if not metrics:
        return "", gr.Column(visible=False), "", "", None, None, no_tokens, no_file, no_file, no_file
    final = from_payload(metrics)
    downloads = exported({"result.json": as_json(final), "result.md": as_markdown(final)})
    if isinstance(final, Result):
        tokens = gr.HTML(token_view(final.logprobs), visible=True) if final.logprobs else no_tokens
        return metrics_line(final), gr.Column(visible=False), "", "", None, None, tokens, *downloads, no_file
    return (
        comparison_line(final),
        gr.Column(visible=True),
        gr.Textbox(value=final.a.text, label=f"A: {final.a_label} output"),
        gr.Textbox(value=final.b.text, label=f"B: {final.b_label} output"),
        comparison_table(final),
        comparison_figure(final),
        no_tokens,
        *downloads,
        *exported({"trials.csv": trials_csv(final)}),
    )


def panel_views(metrics: dict | None) -> tuple:
    """The panel for the metrics JSON as it stands: while an answer streams (ui.endpoints.LiveSpeed) the
    live line, the last result's views put away; then the result's (show_results)."""
    if metrics and "streaming" in metrics:
        return live_line(metrics), *show_results(None)[1:]
    return show_results(metrics)


def live_line(metrics: dict) -> str:
    """Each run's tokens so far, tokens/s since its first and time to it, in one line."""
    parts = []
    for run, live in metrics["streaming"].items():
        rate = f"{live['tokens_per_s']:.1f} tok/s" if live["tokens_per_s"] else "…"
        side = f"{run}: " if len(metrics["streaming"]) > 1 else ""
        parts.append(f"{side}{live['tokens']} tokens · {rate} · TTFT {live['ttft_ms']:.0f} ms")
    return "streaming — " + " | ".join(parts)


def results_panel(history: gr.BrowserState) -> Panel:
    """Metrics line, the token view (when the run asked for logprobs), and the compare view (hidden
    unless the last run compared)."""
    summary = gr.Markdown(elem_classes="metrics-line")
    tokens = gr.HTML(visible=False, label="Tokens")  # a request's logprobs (ui.tokens)
    with gr.Column(visible=False) as compare:
        with gr.Row():
            a_out = gr.Textbox(label="A output", lines=5, interactive=False)
            b_out = gr.Textbox(label="B output", lines=5, interactive=False)
        table = gr.Dataframe(interactive=False, wrap=True)
        plot = gr.Plot(label="Milliseconds per phase")
    with gr.Accordion("Metrics (JSON)", open=False):
        metrics = gr.JSON(label="Metrics")
    with gr.Row():
        gr.DeepLinkButton(value="Copy a link to this result")  # the page as it stands: inputs, outputs, comparison
        as_json_file = gr.DownloadButton("Download JSON", visible=False, size="sm")
        as_markdown_file = gr.DownloadButton("Download Markdown", visible=False, size="sm")
        as_csv_file = gr.DownloadButton("Download the trials (CSV)", visible=False, size="sm")
    views = [summary, compare, a_out, b_out, table, plot, tokens, as_json_file, as_markdown_file, as_csv_file]
    # One handler for every value, the last value always handled last: a streaming update handled after
    # the result's would put its views away again
    metrics.change(panel_views, metrics, views, queue=False, trigger_mode="always_last", show_progress="hidden",
                   api_visibility="private")  # fmt: skip
    return Panel(metrics, views, history)


def wire(start: list | Callable, fn: Callable, inputs: list, outputs: list, api_name: str | None = None,
         panel: Panel | None = None, progress_on: list | None = None) -> gr.events.Dependency:  # fmt: skip
    """A model-bound event (`start`: gr.on's triggers, or a `.then`): one shared queue for every tab,
    then the results panel and the history. A handler's validator (ui.endpoints) runs before the queue."""
    start = functools.partial(gr.on, start) if isinstance(start, list) else start
    event = start(
        fn,
        inputs,
        outputs,
        api_name=api_name,
        concurrency_id="model",
        concurrency_limit=settings().app_concurrency,
        show_progress_on=progress_on,
        api_visibility="public" if api_name else "private",
        api_description=inspect.getdoc(fn).split("\n\n")[0] if api_name else None,
        validator=getattr(fn, "validator", None),
    )
    if panel:  # its views follow the metrics JSON (results_panel)
        event.success(recorder(fn.__name__), [outputs[-1], panel.history], panel.history, queue=False,
                      api_visibility="private")  # fmt: skip
    return event


def stoppable(stop: gr.Button, events: list, line: gr.Markdown) -> None:
    """Stop cancels the running request: Gradio closes its stream, which ends the request's decode
    loop at the next step and frees its row of the batch (engine.runtime.runner), and the output so far
    stays on the page. Outside the queue, so it acts at once even when the queue is full."""
    stop.click(lambda: STOPPED, None, line, cancels=events, queue=False, api_visibility="private")
