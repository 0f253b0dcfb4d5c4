"""Transformer Studio UI: one tab per task plus the Lab, over the shared engine. Wiring only.

`python app.py` serves it (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT as usual); `--mcp` or
STUDIO_MCP=1 also serves every endpoint as an MCP tool. The run options' controls, endpoint
parameters and their docs come from the engine's declaration (engine.options.OPTIONS).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from engine import (
    DEFAULT_MODEL,
    MAP_TOKENS,
    OPTIONS,
    Chunk,
    GenerationRequest,
    Option,
    Result,
    SettingsError,
    StudioError,
    list_models,
    options_from,
    precheck,
    stream_request,
)
from engine import attention_map as measure_attention_map
from engine.api.options import OPTION_BY_NAME
from engine.api.report import comparison_line, from_payload, labelled, metrics_line, to_payload
from engine.attention.patterns import pattern_catalog
from engine.models.defaults import model_catalog, task_default
from engine.platform.settings import settings
from engine.warmup import WarmUp
from tasks import TaskInfo, classification, code, dialogue, lab, summarization, translation
from tasks.render import attention_image, comparison_figure, comparison_table, reference_text

try:
    SETTINGS = settings()
except SettingsError as exc:  # the one-line reason, not a traceback
    sys.exit(f"error: {exc}")
CSS = (Path(__file__).parent / "assets" / "style.css").read_text()

try:  # Hugging Face ZeroGPU: GPU work must run inside @spaces.GPU; elsewhere nothing changes
    import spaces

    on_gpu = spaces.GPU(duration=SETTINGS.gpu_seconds)
except ImportError:

    def on_gpu(fn):
        return fn


def _reporter(progress: gr.Progress):
    return lambda fraction, message: progress(fraction, desc=message)


@contextmanager
def _user_errors():
    """User-fixable errors become gr.Error: a message on the page; it and every other request carry on."""
    try:
        yield
    except StudioError as exc:
        raise gr.Error(str(exc)) from exc


def _events(request: GenerationRequest, progress: gr.Progress):
    """Engine events for the request."""
    with _user_errors():
        yield from stream_request(request, progress=_reporter(progress))


def _stream(request: GenerationRequest, progress: gr.Progress):
    """Yield (text per run so far, metrics JSON or None) for a generative request."""
    texts: dict[str, str] = {}
    for event in _events(request, progress):
        if isinstance(event, Chunk):
            texts[event.run] = texts.get(event.run, "") + event.text
            yield texts, None
        else:
            yield texts, to_payload(event)


def _documented(handler, options: list[Option]):
    """Append the options' one-line help to the handler's Args (the API page and MCP read them)."""
    head, returns = handler.__doc__.split("    Returns:")
    lines = "".join(f"\n        {o.name}: {o.help}" for o in options)
    return head.rstrip() + lines + "\n    Returns:" + returns


def endpoint(build):
    """Give a task handler every run option as a parameter after its own, in declaration order,
    typed and documented from the declaration. `build(*own inputs, options)` makes the request the
    handler receives as `request`. The same build is the event's validator (`wrapper.validator`),
    which Gradio runs before the request joins the queue: a request the engine would refuse
    (engine.precheck) never takes a slot."""

    def decorate(handler):
        own = [p for p in inspect.signature(handler).parameters.values() if p.name not in ("request", "progress")]
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        inputs = [
            *own,
            *(
                inspect.Parameter(o.name, kind, default=o.default, annotation=o.type | None if o.nullable else o.type)
                for o in OPTIONS
            ),
        ]
        signature = inspect.Signature([*inputs, inspect.Parameter("progress", kind, default=gr.Progress())])

        def bound(args, kwargs) -> tuple[list, GenerationRequest, gr.Progress | None]:
            values = signature.bind(*args, **kwargs)
            values.apply_defaults()
            arguments = values.arguments
            options = options_from({o.name: arguments[o.name] for o in OPTIONS})
            own_values = [arguments[p.name] for p in own]
            return own_values, build(*own_values, options), arguments.get("progress")

        def call(args, kwargs):
            with _user_errors():
                own_values, request, progress = bound(args, kwargs)
            return handler(*own_values, request=replace(request, time_limit_s=SETTINGS.time_limit_s), progress=progress)

        def validator(*args, **kwargs):
            """One gr.validate per input: the reason on the first, where the page shows it."""
            try:
                precheck(bound(args, kwargs)[1])
            except StudioError as exc:
                return [gr.validate(False, str(exc)), *(gr.validate(True, "") for _ in inputs[1:])]
            return [gr.validate(True, "") for _ in inputs]

        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def wrapper(*args, **kwargs):
                yield from call(args, kwargs)
        else:

            @functools.wraps(handler)
            def wrapper(*args, **kwargs):
                return call(args, kwargs)

        wrapper.__signature__ = signature
        wrapper.__annotations__ = {
            p.name: p.annotation for p in signature.parameters.values() if p.annotation is not inspect.Parameter.empty
        }
        wrapper.__doc__ = _documented(handler, list(OPTIONS))
        validator.__signature__ = inspect.Signature(inputs)
        wrapper.validator = validator
        return wrapper

    return decorate


@on_gpu
@endpoint(translation.build_request)
def translate(text: str, source: str, target: str, request: GenerationRequest, progress: gr.Progress):
    """Translate text between languages with the chosen model, precision and attention.

    Args:
        text: the text to translate
        source: source language code (en, fr, de, es, it, pt)
        target: target language code, different from the source
    Returns:
        the translation (A and B labelled, in a comparison) and the measured metrics as JSON
    """
    for texts, metrics in _stream(request, progress):
        yield labelled(texts), metrics


@on_gpu
@endpoint(summarization.build_request)
def summarize(text: str, length: str, request: GenerationRequest, progress: gr.Progress):
    """Summarize a document; long documents are where sparse attention pays.

    Args:
        text: the document
        length: short (1 sentence), medium (3) or long (6)
    Returns:
        the summary (A and B labelled, in a comparison) and the measured metrics as JSON
    """
    for texts, metrics in _stream(request, progress):
        yield labelled(texts), metrics


@on_gpu
@endpoint(
    lambda message, history, system, options: dialogue.build_request(list(history or []), message, system, options)
)
def chat(message: str, history: list, system: str, request: GenerationRequest, progress: gr.Progress):
    """Chat: answer a message given the conversation so far.

    Args:
        message: the new user message
        history: earlier turns, a list of {"role": "user" | "assistant", "content": text} messages
        system: the system prompt
    Returns:
        the history with this exchange appended (A's answer in a comparison) and the metrics as JSON
    """
    history = list(history or [])
    turn = [*history, {"role": "user", "content": message}]
    for texts, metrics in _stream(request, progress):
        yield [*turn, {"role": "assistant", "content": reference_text(texts)}], metrics


def retry_turn(history: list, retry_data: gr.RetryData):
    """Retry: drop the exchange from the user message at `retry_data.index` and hand that message on."""
    return dialogue.split_at(history, retry_data.index)


def edit_turn(history: list, edit_data: gr.EditData):
    """An edited user message is asked again, as edited: the turns before it and its new text."""
    return dialogue.split_at(history, edit_data.index)[0], edit_data.value


def undo(history: list, undo_data: gr.UndoData):
    """Drop the last exchange and put its user message back in the textbox."""
    return dialogue.split_at(history, undo_data.index)


@on_gpu
@endpoint(classification.build_request)
def classify(text: str, labels: str, request: GenerationRequest, progress: gr.Progress):
    """Classify text: a probability per candidate label (label likelihood for chat models, the head
    for classifiers). Sampling options do not apply: labels are scored, not generated.

    Args:
        text: the text to classify
        labels: comma-separated candidate labels, at least two
    Returns:
        the label probabilities (top label first) and the measured metrics as JSON
    """
    *_, final = _events(request, progress)
    return classification.scores_of(final), to_payload(final)


@on_gpu
@endpoint(code.build_request)
def generate_code(prompt: str, language: str, request: GenerationRequest, progress: gr.Progress):
    """Generate code from a description. The code is returned, never executed by the server.

    Args:
        prompt: what the code should do
        language: programming language (python, javascript, typescript, rust, go, c, cpp, java, bash, sql)
    Returns:
        the code (A's, in a comparison) and the measured metrics as JSON
    """
    for texts, metrics in _stream(request, progress):
        yield code.extract_code(reference_text(texts)), metrics


def _attention_picture(request: GenerationRequest, layer: int, head: int, progress: gr.Progress):
    """(image, data) of the attention map of the request."""
    with _user_errors():
        found = measure_attention_map(request, int(layer), int(head), progress=_reporter(progress))
    return attention_image(found), found.to_dict()


@on_gpu
@endpoint(lambda text, layer, head, options: GenerationRequest(options, text=text))
def attention_map(text: str, layer: int, head: int, request: GenerationRequest, progress: gr.Progress):
    """The attention picture of a prompt at one layer and query head: the (query block, key block) tiles
    the chosen attention computes at prefill, drawn over dense attention's probabilities, and the keys
    the first decode step reads. Decoder (causal) models.

    Args:
        text: the prompt as the model reads it (no chat template applied)
        layer: the layer, from 0
        head: the query head, from 0
    Returns:
        the picture, and its data as JSON (tiles, density, mass recall, decode keys; the dense
        probabilities for prompts up to MAP_TOKENS tokens, per tile beyond)
    """
    return _attention_picture(request, layer, head, progress)


attention_map.__doc__ = attention_map.__doc__.replace("MAP_TOKENS", str(MAP_TOKENS))


LAB_OPTIONS = ("model", "precision", "window", "sinks", "pattern", "block_size")


def benchmark(model: str, precision: str, lengths: list[int], window: float, sinks: float, whole_model: bool,
              decode_tokens: float, pattern: str = "auto", block_size: float = 64, progress=gr.Progress()):  # fmt: skip
    """Benchmark dense vs sparse attention across sequence lengths on one model.

    Args:
        lengths: sequence lengths in tokens (each at most the model's context)
        whole_model: also time the whole model (prefill, decode, peak memory), not only the attention op
        decode_tokens: decode steps timed after each whole-model prefill
    Returns:
        attention-op ms per length and mode, whole-model prefill ms per length and mode, and the full table
    """
    values = {"model": model, "precision": precision, "window": window, "sinks": sinks, "pattern": pattern}
    with _user_errors():
        options = options_from({**values, "block_size": block_size})
        return lab.run(lengths, whole_model, int(decode_tokens), options, _reporter(progress))


benchmark.__doc__ = _documented(benchmark, [OPTION_BY_NAME[name] for name in LAB_OPTIONS])
benchmark = on_gpu(benchmark)


def frontier(model: str, precision: str, lengths: list[int], budgets: list[float], compiled: bool,
                           progress=gr.Progress()):  # fmt: skip
    """The speed-quality frontier of the sparse patterns (engine.bench frontier) on one model.

    Args:
        lengths: sequence lengths in tokens (2048, 4096, 8192)
        budgets: keys each decode step reads, as shares of the length (e.g. 0.06, 0.12)
        compiled: time the compiled decode steps (each compiled first) instead of eager ones
    Returns:
        the frontier plot (decode and prefill speedups against mean KL to dense, per length) and the table
    """
    with _user_errors():
        options = options_from({"model": model, "precision": precision})
        return lab.run_frontier(lengths, budgets, compiled, options, _reporter(progress))


frontier.__doc__ = _documented(frontier, [OPTION_BY_NAME[n] for n in ("model", "precision")])
frontier = on_gpu(frontier)


WARM_UP = WarmUp(DEFAULT_MODEL)  # started by launch(): the first visitor finds the default model ready


def warm_banner():
    """The default model's warm-up as a line under the title, polled until it is done."""
    state = WARM_UP.state()
    if state.phase == "ready":
        line = f"Ready: {state.message} ({state.seconds:.1f} s after start)."
    elif state.phase == "failed":
        line = f"The default model could not be prepared: {state.message}"
    else:
        line = f"Preparing the default model: {state.message} ({state.seconds:.0f} s)…"
    return gr.Markdown(line, visible=True), gr.Timer(active=not state.done)


@gr.mcp.resource(
    "studio://models",
    "The model registry: name, family, source, tasks, what each is good for, and each task's default here.",
    "application/json",
)
def models() -> str:
    """The model registry, as JSON."""
    return json.dumps(model_catalog(), indent=1)


@gr.mcp.resource(
    "studio://patterns",
    "The sparse attention patterns: what each keeps, by position or by content.",
    "application/json",
)
def patterns() -> str:
    """The sparse attention patterns, as JSON."""
    return json.dumps(pattern_catalog(), indent=1)


@gr.mcp.resource(
    "studio://benchmark/last",
    "The last Lab benchmark (sweep or frontier) this server ran, with its rows.",
    "application/json",
)
def last_benchmark() -> str:
    """The last Lab benchmark, as JSON (an empty object before any)."""
    return json.dumps(lab.last_benchmark(), indent=1, default=str)


def show_results(metrics: dict | None):
    """Metrics line and, for a comparison, the side-by-side view, from the typed result."""
    if not metrics:
        return "", gr.Column(visible=False), "", "", None, None
    final = from_payload(metrics)
    if isinstance(final, Result):
        return metrics_line(final), gr.Column(visible=False), "", "", None, None
    return (
        comparison_line(final),
        gr.Column(visible=True),
        gr.Textbox(value=final.a.text, label=f"A: {final.a_label} output"),
        gr.Textbox(value=final.b.text, label=f"B: {final.b_label} output"),
        comparison_table(final),
        comparison_figure(final),
    )


def _label(option: Option) -> str:
    return option.name.replace("_", " ").capitalize()


def control(option: Option, task: str = "dialogue") -> gr.Component:
    """The UI control of one run option, from its declaration."""
    common = {"label": _label(option), "info": option.help}
    if option.name == "model":  # what each model is good for in the menu; the task's best loadable one chosen
        chosen = task_default(task)
        menu = [(f"{spec.name} · {spec.description}" if spec.description else spec.name, spec.name)
                for spec in list_models(task)]  # fmt: skip
        info = f"{option.help}. Here: {chosen.model}, {chosen.reason}."
        return gr.Dropdown(menu, value=chosen.model, **{**common, "info": info})
    if option.choices is not None:
        notes = option.choice_notes or {}
        # (label, value) pairs: the menu says what runs each choice, the API still takes the bare name
        choices = [(f"{c} · {notes[c]}", c) if c in notes else c for c in option.choices]
        component = gr.Radio if len(choices) <= 4 else gr.Dropdown
        return component(choices, value=option.default, **common)
    if option.type is bool:
        return gr.Checkbox(value=option.default, **common)
    if option.type is str:
        return gr.Textbox(value=option.default, **common)
    if option.nullable:
        return gr.Number(value=option.default, minimum=option.minimum, maximum=option.maximum, precision=0, **common)
    return gr.Slider(option.minimum, option.maximum, value=option.default, step=option.step, **common)


def _controls(info: TaskInfo) -> list[gr.Component]:
    """Every run option's control, in declaration order (the endpoint's parameter order), laid out
    by group: main in a row, the others in accordions; sampling hidden for a task that only scores."""
    task = info.name
    made: dict[str, gr.Component] = {}
    with gr.Row():
        for option in OPTIONS:
            if option.group == "main":
                made[option.name] = control(option, task)
    accordions = (
        ("advanced", "Advanced"),
        ("sampling", "Sampling (temperature 0 = greedy)"),
        ("compare", "Compare A vs B (an experiment: interleaved trials, intervals, quality cost)"),
    )
    for group, title in accordions:
        with gr.Accordion(title, open=False, visible=info.generates or group != "sampling"):
            for option in OPTIONS:
                if option.group == group:
                    made[option.name] = control(option, task)
    return [made[option.name] for option in OPTIONS]


def _results_panel() -> tuple[gr.JSON, list]:
    """Metrics line plus the compare view (hidden unless the last run compared)."""
    summary = gr.Markdown(elem_classes="metrics-line")
    with gr.Column(visible=False) as compare:
        with gr.Row():
            a_out = gr.Textbox(label="A output", lines=5, interactive=False)
            b_out = gr.Textbox(label="B output", lines=5, interactive=False)
        table = gr.Dataframe(interactive=False, wrap=True)
        plot = gr.Plot(label="Milliseconds per phase")
    with gr.Accordion("Metrics (JSON)", open=False):
        metrics = gr.JSON(label="Metrics")
    gr.DeepLinkButton(value="Copy a link to this result")  # the page as it stands: inputs, outputs, comparison
    return metrics, [summary, compare, a_out, b_out, table, plot]


def _run_section(info: TaskInfo, button: str, output: type[gr.Component], **output_args):
    """Below a tab's inputs: the run options, the action button (and Stop, for a task that
    generates), the output and the results panel."""
    shared = _controls(info)
    with gr.Row():
        go = gr.Button(button, variant="primary", scale=4)
        stop = gr.Button("Stop", variant="stop", visible=info.generates, scale=1)
    out = output(**output_args)
    metrics, panel = _results_panel()
    return shared, (go, stop), out, metrics, panel


STOPPED = "**Stopped.** The output so far stays here; the engine dropped the request at its next step."


def _stoppable(stop: gr.Button, events: list, line: gr.Markdown) -> None:
    """Stop cancels the running request: Gradio closes its stream, which ends the request's decode
    loop at the next step and frees its row of the batch (engine.scheduler), and the output so far
    stays on the page. Outside the queue, so it acts at once even when the queue is full."""
    stop.click(lambda: STOPPED, None, line, cancels=events, queue=False, api_visibility="private")


def _wire(start, fn, inputs, outputs, api_name, panel=None, progress_on=None):
    """A model-bound event (`start`: gr.on's triggers, or a `.then`): one shared queue for every tab,
    then the results panel."""
    start = functools.partial(gr.on, start) if isinstance(start, list) else start
    event = start(
        fn,
        inputs,
        outputs,
        api_name=api_name,
        concurrency_id="model",
        concurrency_limit=SETTINGS.app_concurrency,
        show_progress_on=progress_on,
        api_visibility="public" if api_name else "private",
        api_description=inspect.getdoc(fn).split("\n\n")[0] if api_name else None,
        validator=getattr(fn, "validator", None),
    )
    if panel:
        event.success(show_results, outputs[-1], panel, api_visibility="private")
        event.success(_recorder(fn.__name__), [outputs[-1], HISTORY], HISTORY, queue=False, api_visibility="private")
    return event


HISTORY_RUNS = 50
HISTORY_COLUMNS = ["when", "task", "result"]


def _recorder(task: str):
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


def _task_header(info) -> None:
    gr.Markdown(info.description)


def _map_view() -> tuple[gr.Number, gr.Number, gr.Button, gr.Image, gr.JSON]:
    """Layer and head pickers, the button, the picture and its data."""
    with gr.Row():
        layer = gr.Number(0, label="Layer", precision=0, minimum=0)
        head = gr.Number(0, label="Head", precision=0, minimum=0)
        show = gr.Button("Show the attention map", scale=0)
    image = gr.Image(label="Attention map", interactive=False)
    with gr.Accordion("Map data (JSON)", open=False):
        data = gr.JSON(label="Map data")
    return layer, head, show, image, data


def _map_panel(inputs: list[gr.Component], build, shared: list[gr.Component]) -> None:
    """The attention map of the tab's request as its inputs and options stand (private: the API has
    /attention_map)."""
    with gr.Accordion("Attention map: what the chosen attention computes, over dense attention", open=False):
        layer, head, show, image, data = _map_view()
    own, names = len(inputs), [option.name for option in OPTIONS]

    def picture(*values, progress=gr.Progress()):
        with _user_errors():
            request = build(*values[:own], options_from(dict(zip(names, values[own + 2 :], strict=True))))
        return _attention_picture(request, values[own], values[own + 1], progress)

    _wire([show.click], on_gpu(picture), [*inputs, layer, head, *shared], [image, data], None)


with gr.Blocks(title="Transformer Studio") as demo:
    gr.Markdown(
        "# Transformer Studio\nDense vs sparse attention at any precision, measured on every request. "
        f"The default model ({DEFAULT_MODEL}) is tiny and runs offline: fast to measure, often wrong."
    )
    # This browser's runs, kept in its own storage (no one else's inputs are ever shown to it)
    HISTORY = gr.BrowserState([], storage_key="studio-history")
    warm_line = gr.Markdown(visible=False, elem_classes="warm-line")
    warm_poll = gr.Timer(1.0)
    warm_poll.tick(warm_banner, None, [warm_line, warm_poll], queue=False, api_visibility="private")
    demo.load(warm_banner, None, [warm_line, warm_poll], queue=False, api_visibility="private")
    with gr.Tab(translation.INFO.label):
        _task_header(translation.INFO)
        src_text = gr.Textbox(label="Text", lines=4)
        with gr.Row():
            source = gr.Dropdown(list(translation.LANGUAGES), value="en", label="From")
            swap = gr.Button("⇄ Swap", scale=0)
            target = gr.Dropdown(list(translation.LANGUAGES), value="fr", label="To")
        shared, (go, stop), out, metrics, panel = _run_section(
            translation.INFO, "Translate", gr.Textbox, label="Translation", lines=4
        )
        gr.Examples(translation.INFO.examples, [src_text, source, target])
        swap.click(lambda a, b: (b, a), [source, target], [source, target], api_visibility="private")
        running = _wire([go.click], translate, [src_text, source, target, *shared], [out, metrics], "translate", panel)
        _stoppable(stop, [running], panel[0])
        _map_panel([src_text, source, target], translation.build_request, shared)
    with gr.Tab(summarization.INFO.label):
        _task_header(summarization.INFO)
        doc = gr.Textbox(label="Document", lines=8)
        length = gr.Radio(list(summarization.LENGTHS), value="short", label="Length")
        shared, (go, stop), out, metrics, panel = _run_section(
            summarization.INFO, "Summarize", gr.Textbox, label="Summary", lines=4
        )
        gr.Examples(summarization.EXAMPLES, [doc, length])
        running = _wire([go.click], summarize, [doc, length, *shared], [out, metrics], "summarize", panel)
        _stoppable(stop, [running], panel[0])
        _map_panel([doc, length], summarization.build_request, shared)
    with gr.Tab(dialogue.INFO.label):
        _task_header(dialogue.INFO)
        bot = gr.Chatbot(label="Chat", height=380, editable="user")  # copy buttons are Gradio's defaults
        msg = gr.Textbox(label="Message", placeholder="Type a message and press Enter")
        system = gr.Textbox(value=dialogue.DEFAULT_SYSTEM, label="System prompt")
        shared = _controls(dialogue.INFO)
        with gr.Row():
            send = gr.Button("Send", variant="primary")
            stop = gr.Button("Stop", variant="stop")
            gr.ClearButton([bot, msg], value="Clear")
        metrics, panel = _results_panel()
        gr.Examples(dialogue.INFO.examples, [msg])
        retried = gr.State("")
        # Progress and errors show on the metrics line, so a failed turn never covers the conversation.
        status = [panel[0]]
        sent = _wire([send.click, msg.submit], chat, [msg, bot, system, *shared], [bot, metrics], "chat", panel, status)
        sent.success(lambda: "", None, msg, api_visibility="private")  # keep the message if it failed
        retry = bot.retry(retry_turn, bot, [bot, retried], api_visibility="private")
        retried_run = _wire(retry.then, chat, [retried, bot, system, *shared], [bot, metrics], None, panel, status)
        edited = bot.edit(edit_turn, bot, [bot, retried], api_visibility="private")
        edited_run = _wire(edited.then, chat, [retried, bot, system, *shared], [bot, metrics], None, panel, status)
        _stoppable(stop, [sent, retried_run, edited_run], panel[0])
        bot.undo(undo, bot, [bot, msg], api_visibility="private")
        _map_panel([bot, msg, system], dialogue.shown_request, shared)
    with gr.Tab(classification.INFO.label):
        _task_header(classification.INFO)
        cls_text = gr.Textbox(label="Text", lines=3)
        labels = gr.Textbox(value=", ".join(classification.DEFAULT_LABELS), label="Candidate labels")
        shared, (go, _), out, metrics, panel = _run_section(classification.INFO, "Classify", gr.Label, label="Labels")
        gr.Examples(classification.INFO.examples, [cls_text, labels])
        _wire([go.click], classify, [cls_text, labels, *shared], [out, metrics], "classify", panel)
        _map_panel([cls_text, labels], classification.build_request, shared)
    with gr.Tab(code.INFO.label):
        _task_header(code.INFO)
        prompt = gr.Textbox(label="Describe the code", lines=3)
        language = gr.Dropdown(list(code.LANGUAGES), value="python", label="Language")
        shared, (go, stop), out, metrics, panel = _run_section(
            code.INFO, "Generate", gr.Code, label="Code (never executed)", language="python"
        )
        gr.Examples(code.INFO.examples, [prompt, language])
        language.change(lambda lang: gr.Code(language=code.highlight_language(lang)), language, out,
                        api_visibility="private")  # fmt: skip
        running = _wire([go.click], generate_code, [prompt, language, *shared], [out, metrics], "generate_code", panel)
        _stoppable(stop, [running], panel[0])
        _map_panel([prompt, language], code.build_request, shared)
    with gr.Tab("Lab"):
        gr.Markdown(
            "Dense vs sparse attention across sequence lengths on the chosen model: the attention op alone "
            "(one layer, model shapes) and the whole model. Long lengths take a while on CPU."
        )
        lab_controls = {name: control(OPTION_BY_NAME[name]) for name in LAB_OPTIONS}
        lab_lengths = gr.CheckboxGroup(list(lab.LENGTHS), value=list(lab.DEFAULT_LENGTHS), label="Sequence lengths")
        with gr.Row():
            lab_whole = gr.Checkbox(value=True, label="Whole model too (prefill, decode, memory)")
            lab_decode = gr.Slider(1, 64, value=8, step=1, label="Decode tokens")
        run_lab = gr.Button("Run benchmark", variant="primary")
        with gr.Row():
            op_plot = gr.LinePlot(x="tokens", y="ms", color="mode", title="Attention op, one layer (ms)")
            model_plot = gr.LinePlot(x="tokens", y="ms", color="mode", title="Whole-model prefill (ms)")
        lab_table = gr.Dataframe(label="Results", interactive=False)
        gr.Markdown(
            "### Speed–quality frontier\nEach pattern at each budget on two long real texts (prose, code): "
            "quality against dense attention (mean KL, top-1 agreement), the share of dense attention's mass "
            "kept, and prefill and decode speed. Minutes per length on CPU; the engine serves no one meanwhile."
        )
        frontier_controls = {name: control(OPTION_BY_NAME[name]) for name in ("model", "precision")}
        with gr.Row():
            frontier_lengths = gr.CheckboxGroup([(f"{n // 1024}k", n) for n in lab.FRONTIER_LENGTHS], value=[2048],
                                                label="Lengths (tokens)")  # fmt: skip
            frontier_budgets = gr.CheckboxGroup(list(lab.DENSITIES), value=list(lab.DENSITIES),
                                                label="Budgets (share of the length)")  # fmt: skip
            frontier_compiled = gr.Checkbox(False, label="Time compiled decode steps (compiles each step first)")
        run_frontier = gr.Button("Run the frontier", variant="primary")
        frontier_plot = gr.Image(label="Decode and prefill speedups against mean KL to dense", interactive=False)
        frontier_table = gr.Dataframe(label="Frontier", interactive=False)
        _wire(
            [run_frontier.click],
            frontier,
            [*frontier_controls.values(), frontier_lengths, frontier_budgets, frontier_compiled],
            [frontier_plot, frontier_table],
            "frontier",
        )
        gr.Markdown(
            "### Attention map of any prompt\nThe prompt as the model reads it (no chat template): the tiles "
            "the chosen attention computes over dense attention's probabilities, and the keys the first decode "
            "step reads. Each task tab has the same map for its own request."
        )
        map_text = gr.Textbox(label="Prompt", lines=4)
        map_shared = _controls(lab.MAP_INFO)
        layer, head, show, image, data = _map_view()
        _wire([show.click], attention_map, [map_text, layer, head, *map_shared], [image, data], "attention_map")
        c = lab_controls
        _wire(
            [run_lab.click],
            benchmark,
            [
                c["model"],
                c["precision"],
                lab_lengths,
                c["window"],
                c["sinks"],
                lab_whole,
                lab_decode,
                c["pattern"],
                c["block_size"],
            ],
            [op_plot, model_plot, lab_table],
            "benchmark",
        )

    with gr.Tab("History"):
        gr.Markdown(
            f"This browser's last {HISTORY_RUNS} runs, newest first: each result's metrics line (kept in "
            "this browser's storage, not on the server)."
        )
        history_table = gr.Dataframe(history_frame([]), interactive=False, wrap=True, label="Runs")
        clear_history = gr.Button("Clear the history")
    HISTORY.change(history_frame, HISTORY, history_table, queue=False, api_visibility="private")
    demo.load(history_frame, HISTORY, history_table, queue=False, api_visibility="private")
    clear_history.click(list, None, HISTORY, queue=False, api_visibility="private")

    for resource in (models, patterns, last_benchmark):  # MCP resources (and plain GET-like API calls)
        gr.api(resource, api_name=resource.__name__, queue=False)

demo.queue(max_size=SETTINGS.app_max_queue, default_concurrency_limit=SETTINGS.app_concurrency)


def launch(**kwargs):
    """Serve the app; theme and CSS go to launch() in Gradio 6."""
    mcp = "--mcp" in sys.argv[1:] or SETTINGS.mcp
    if WARM_UP.state().phase == "waiting":
        WARM_UP.start()
    options = {"theme": gr.themes.Soft(), "css": CSS, "mcp_server": mcp or None, **kwargs}
    return demo.launch(**options)


if __name__ == "__main__":
    launch()
