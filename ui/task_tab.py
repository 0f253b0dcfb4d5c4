"""One tab per task, built from its declaration (tasks.base.Task): its inputs, the run options,
the action, the output, the results panel, its examples and its attention map. The API endpoint
is the tab's action. A chat task (layout "chat") puts the conversation first and adds retry,
edit and undo."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from tasks import Output, Task
from tasks.base import split_at

from .controls import controls, input_widget
from .endpoints import task_endpoint
from .maps import map_panel
from .results import Panel, results_panel, stoppable, wire


def output_widget(output: Output) -> gr.Component:
    if output.kind == "chat":
        return gr.Chatbot(label=output.label, height=380, editable="user")  # copy buttons are Gradio's defaults
    if output.kind == "label":
        return gr.Label(label=output.label)
    if output.kind == "code":
        return gr.Code(label=output.label, language=output.language)
    return gr.Textbox(label=output.label, lines=output.lines)


def _form_inputs(task: Task) -> dict[str, gr.Component]:
    """The inputs in declaration order; a swapped pair side by side with the swap button between."""
    made: dict[str, gr.Component] = {}
    first, second = task.tab.swap or (None, None)
    for declared in task.inputs:
        if declared.name == second:
            continue
        if declared.name != first:
            made[declared.name] = input_widget(declared)
            continue
        with gr.Row():
            a = made[first] = input_widget(declared)
            swap = gr.Button("⇄ Swap", scale=0)
            b = made[second] = input_widget(next(i for i in task.inputs if i.name == second))
        swap.click(lambda x, y: (y, x), [a, b], [a, b], api_visibility="private")
    return made


def form_tab(task: Task, history: gr.BrowserState) -> None:
    """Inputs, run options, the action (and Stop, for a task that generates), output, results."""
    gr.Markdown(task.tab.description)
    made = _form_inputs(task)
    inputs = [made[i.name] for i in task.inputs]
    shared = controls(task.model_task, task.generates)
    with gr.Row():
        go = gr.Button(task.tab.action, variant="primary", scale=4)
        stop = gr.Button("Stop", variant="stop", visible=task.generates, scale=1)
    out = output_widget(task.output)
    panel = results_panel(history)
    if task.examples:
        gr.Examples(task.examples, inputs[: len(task.examples[0])])
    if (output := task.output).highlight_from:
        made[output.highlight_from].change(lambda value: gr.Code(language=output.highlight(value)),
                                           made[output.highlight_from], out, api_visibility="private")  # fmt: skip
    handler = task_endpoint(task)
    running = wire([go.click], handler, [*inputs, *shared], [out, panel.metrics], task.api.name, panel)
    if task.generates:
        stoppable(stop, [running, branching(handler, out, panel)], panel)
    map_panel(inputs, task.map_builder or task.builder, shared)


def branching(handler: Callable, out: gr.Component, panel: Panel, progress_on: list | None = None) -> gr.events.Dependency:  # fmt: skip
    """A click on an alternative in the panel's token view continues the last answer from it, into the
    task's output (ui.branches)."""
    return wire([panel.tokens.click], handler.branch, [panel.asked, panel.metrics], [out, panel.metrics], None, panel,
                progress_on, asks=False)  # fmt: skip


def retry_turn(history: list, retry_data: gr.RetryData) -> tuple[list, str]:
    """Retry: drop the exchange from the user message at `retry_data.index` and hand that message on."""
    return split_at(history, retry_data.index)


def edit_turn(history: list, edit_data: gr.EditData) -> tuple[list, str]:
    """An edited user message is asked again, as edited: the turns before it and its new text."""
    return split_at(history, edit_data.index)[0], edit_data.value


def undo(history: list, undo_data: gr.UndoData) -> tuple[list, str]:
    """Drop the last exchange and put its user message back in the textbox."""
    return split_at(history, undo_data.index)


def chat_tab(task: Task, history: gr.BrowserState) -> None:
    """The conversation (the task's output, and its second input: the history), the message, the
    other inputs; Send, Stop, Clear; retry, edit and undo ask again through the same handler."""
    gr.Markdown(task.tab.description)
    message_input, _, *rest = task.inputs
    bot = output_widget(task.output)
    msg = input_widget(message_input)
    inputs = [msg, bot, *(input_widget(declared) for declared in rest)]
    shared = controls(task.model_task, task.generates)
    with gr.Row():
        send = gr.Button(task.tab.action, variant="primary")
        stop = gr.Button("Stop", variant="stop")
        gr.ClearButton([bot, msg], value="Clear")
    panel: Panel = results_panel(history)
    gr.Examples(task.examples, [msg])
    retried = gr.State("")
    chat = task_endpoint(task)
    # Progress and errors show on the metrics line, so a failed turn never covers the conversation.
    status = [panel.line]
    outputs = [bot, panel.metrics]
    sent = wire([send.click, msg.submit], chat, [*inputs, *shared], outputs, task.api.name, panel, status)
    sent.success(lambda: "", None, msg, api_visibility="private")  # keep the message if it failed
    again = [retried, *inputs[1:], *shared]
    retry = bot.retry(retry_turn, bot, [bot, retried], api_visibility="private")
    edited = bot.edit(edit_turn, bot, [bot, retried], api_visibility="private")
    asked_again = [wire(event.then, chat, again, outputs, None, panel, status) for event in (retry, edited)]
    # A branch of the last answer replaces it in the conversation: an edit of the assistant turn
    stoppable(stop, [sent, *asked_again, branching(chat, bot, panel, status)], panel)
    bot.undo(undo, bot, [bot, msg], api_visibility="private")
    map_panel(inputs, task.map_builder or task.builder, shared)


def task_tab(task: Task, history: gr.BrowserState) -> None:
    with gr.Tab(task.tab.label):
        (chat_tab if task.tab.layout == "chat" else form_tab)(task, history)
