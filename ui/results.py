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
from .tokens import ON_CLICK, divergence_view, token_view

STOPPED = "**Stopped.** The output so far stays here; the engine dropped the request at its next step."
STOPPED_PAYLOAD = {"stopped": True}  # the metrics JSON after Stop (panel_views shows STOPPED)


@dataclass(frozen=True)
class Panel:
    metrics: gr.JSON  # the event's last output: the result as JSON
    # metrics line, compare column, A output, B output, table, plot, token view, the answer a branch
    # left, the three downloads, where a comparison's answers part
    views: list[gr.Component]
    history: gr.BrowserState  # the browser's runs, which each result joins
    asked: gr.State  # the inputs of the last run, by the endpoint's parameters (a branch continues it)
    stopped: gr.State  # the id of the live stream Stop ended

    @property
    def line(self) -> gr.Markdown:
        return self.views[0]

    @property
    def tokens(self) -> gr.HTML:
        return self.views[6]


def hidden_views() -> tuple:
    """Every view of the panel empty and put away, in `Panel.views` order."""
    no_file = gr.DownloadButton(visible=False)
    return ("", gr.Column(visible=False), "", "", None, None, gr.HTML(visible=False), gr.Textbox(visible=False),
            no_file, no_file, no_file, gr.HTML(visible=False))  # fmt: skip


def show_results(metrics: dict | None) -> tuple:
    """Metrics line and the token view, or for a comparison the side-by-side view, from the typed result."""
    hidden = hidden_views()
    if not metrics:
        return hidden
    no_tokens, no_branch, no_file, no_divergence = hidden[6], hidden[7], hidden[8], hidden[11]
    final = from_payload(metrics)
    downloads = exported({"result.json": as_json(final), "result.md": as_markdown(final)})
    if isinstance(final, Result):
        tokens = no_tokens
        if final.logprobs:
            tokens = gr.HTML(token_view(final.logprobs, final.metrics.sampling, final.branch), visible=True)
        left = no_branch
        if (branch := final.branch) is not None:
            label = f"The answer this one branched from (at token {branch.at + 1}: {branch.was!r} → {branch.now!r})"
            left = gr.Textbox(value=branch.original, label=label, visible=True)
        return (
            metrics_line(final),
            gr.Column(visible=False),
            "",
            "",
            None,
            None,
            tokens,
            left,
            *downloads,
            no_file,
            no_divergence,
        )
    return (
        comparison_line(final),
        gr.Column(visible=True),
        gr.Textbox(value=final.a.text, label=f"A: {final.a_label} output"),
        gr.Textbox(value=final.b.text, label=f"B: {final.b_label} output"),
        comparison_table(final),
        comparison_figure(final),
        no_tokens,
        no_branch,
        *downloads,
        *exported({"trials.csv": trials_csv(final)}),
        gr.HTML(divergence_view(final.divergence, final.a_label, final.b_label), visible=True)
        if final.divergence
        else no_divergence,
    )


def panel_views(metrics: dict | None, stopped: str | None = None) -> tuple:
    """The panel for the metrics JSON as it stands: while an answer streams (ui.endpoints.LiveSpeed) the
    live line, the last result's views put away (with every update: this handler sees only the last of
    several that came while it ran); after Stop, its line and the rest as it was, also for a late update
    of the stream it stopped (`stopped`: its id), which may be the only value of the two handled; then
    the result's (show_results)."""
    hidden = hidden_views()
    if metrics and ("stopped" in metrics or (stopped is not None and metrics.get("stream") == stopped)):
        return STOPPED, *(gr.skip() for _ in hidden[1:])
    if metrics and "streaming" in metrics:
        return live_line(metrics), *hidden[1:]
    return show_results(metrics)


def stop_mark(metrics: dict | None) -> tuple[dict, str | None]:
    """What Stop leaves: its mark in the metrics JSON, and the id of the stream it stopped."""
    return STOPPED_PAYLOAD, (metrics or {}).get("stream")


def is_result(metrics: dict) -> bool:
    """Whether the metrics JSON holds a result's payload, not the live speed nor Stop's mark."""
    return "streaming" not in metrics and "stopped" not in metrics


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
    tokens = gr.HTML(visible=False, label="Tokens", js_on_load=ON_CLICK)  # a request's logprobs (ui.tokens)
    left = gr.Textbox(visible=False, lines=3, interactive=False)  # the answer a branch left (ui.branches)
    with gr.Column(visible=False) as compare:
        with gr.Row():
            a_out = gr.Textbox(label="A output", lines=5, interactive=False)
            b_out = gr.Textbox(label="B output", lines=5, interactive=False)
        parted = gr.HTML(visible=False)  # where the two answers part (ui.tokens.divergence_view)
        table = gr.Dataframe(interactive=False, wrap=True)
        plot = gr.Plot(label="Milliseconds per phase")
    with gr.Accordion("Metrics (JSON)", open=False):
        metrics = gr.JSON(label="Metrics")
    with gr.Row():
        gr.DeepLinkButton(value="Copy a link to this result")  # the page as it stands: inputs, outputs, comparison
        as_json_file = gr.DownloadButton("Download JSON", visible=False, size="sm")
        as_markdown_file = gr.DownloadButton("Download Markdown", visible=False, size="sm")
        as_csv_file = gr.DownloadButton("Download the trials (CSV)", visible=False, size="sm")
    views = [summary, compare, a_out, b_out, table, plot, tokens, left, as_json_file, as_markdown_file, as_csv_file,
             parted]  # fmt: skip
    # One handler for every value, the last value always handled last: a streaming update handled after
    # the result's would put its views away again
    stopped = gr.State()  # the id of the stream Stop ended (stop_mark)
    metrics.change(panel_views, [metrics, stopped], views, queue=False, trigger_mode="always_last",
                   show_progress="hidden", api_visibility="private")  # fmt: skip
    return Panel(metrics, views, history, gr.State(), stopped)


def wire(start: list | Callable, fn: Callable, inputs: list, outputs: list, api_name: str | None = None,
         panel: Panel | None = None, progress_on: list | None = None, asks: bool = True) -> gr.events.Dependency:  # fmt: skip
    """A model-bound event (`start`: gr.on's triggers, or a `.then`): one shared queue for every tab,
    then the results panel and the history. A handler's validator (ui.endpoints) runs before the queue.
    `asks`: its inputs are a new request's, kept as the panel's `asked` as it starts (a branch's are not)."""
    start = functools.partial(gr.on, start) if isinstance(start, list) else start
    if panel and asks:
        start(lambda *values: list(values), inputs, panel.asked, queue=False, api_visibility="private")
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


def stoppable(stop: gr.Button, events: list, panel: Panel) -> None:
    """Stop cancels the running request: Gradio closes its stream, which ends the request's decode
    loop at the next step and frees its row of the batch (engine.runtime.runner), and the output so far
    stays on the page. Outside the queue, so it acts at once even when the queue is full."""
    # Through the metrics JSON, whose last value the panel always shows last, naming the stream it
    # stopped: a live update of that stream still on its way would otherwise overwrite the line.
    stop.click(stop_mark, panel.metrics, [panel.metrics, panel.stopped], cancels=events, queue=False,
               api_visibility="private")  # fmt: skip
