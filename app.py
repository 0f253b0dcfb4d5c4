"""Transformer Studio UI: one tab per task plus the Lab, over the shared engine. Wiring only.

`python app.py` serves it (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT as usual); `--mcp` or
STUDIO_MCP=1 also serves every endpoint as an MCP tool.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from engine import ATTENTION_MODES, PRECISIONS, Chunk, StudioError, list_models, stream_request
from engine.attention import PATTERNS
from engine.registry import DEFAULT_MODEL
from tasks import RunOptions, classification, code, dialogue, lab, summarization, translation
from tasks.render import (
    PHASE_ORDER,
    comparison_frame,
    comparison_table,
    is_comparison,
    metrics_dict,
    metrics_summary,
    reference_text,
    streamed_text,
)

CONCURRENCY = int(os.environ.get("STUDIO_CONCURRENCY", "1"))  # model-bound requests running at once
MAX_QUEUE = int(os.environ.get("STUDIO_MAX_QUEUE", "16"))  # waiting requests; more get "queue is full"
TIME_LIMIT_S = float(os.environ.get("STUDIO_TIME_LIMIT_S", "180"))  # decoding stops after this long
GPU_SECONDS = int(os.environ.get("STUDIO_GPU_SECONDS", "60"))  # ZeroGPU: declared (and charged) duration
CSS = (Path(__file__).parent / "assets" / "style.css").read_text()

try:  # Hugging Face ZeroGPU: GPU work must run inside @spaces.GPU; elsewhere nothing changes
    import spaces

    on_gpu = spaces.GPU(duration=GPU_SECONDS)
except ImportError:

    def on_gpu(fn):
        return fn


def _options(model, precision, attention, window, sinks, max_new_tokens, truncate, pattern) -> RunOptions:
    return RunOptions(
        model=model,
        precision=precision,
        attention=attention,
        window=int(window),
        sinks=int(sinks),
        max_new_tokens=int(max_new_tokens),
        truncate=bool(truncate),
        pattern=pattern or "auto",
        time_limit_s=TIME_LIMIT_S,
    )


def _reporter(progress: gr.Progress):
    return lambda fraction, message: progress(fraction, desc=message)


@contextmanager
def _user_errors():
    """User-fixable errors become gr.Error: a message on the page; it and every other request carry on."""
    try:
        yield
    except StudioError as exc:
        raise gr.Error(str(exc)) from exc


def _events(build, progress: gr.Progress):
    """Engine events for the request `build()` makes."""
    with _user_errors():
        yield from stream_request(build(), progress=_reporter(progress))


def _stream(build, progress: gr.Progress):
    """Yield (text per run so far, metrics JSON or None) for a generative request."""
    texts: dict[str, str] = {}
    for event in _events(build, progress):
        if isinstance(event, Chunk):
            texts[event.run] = texts.get(event.run, "") + event.text
            yield texts, None
        else:
            yield texts, metrics_dict(event)


RUN_OPTION_ARGS = """
        model: a model name from the registry (`python -m engine models`) that serves this task
        precision: auto, fp32, fp16, bf16, int8, nf4 or fp4
        attention: dense, sparse, or compare (runs both and reports speedups and agreement)
        window: sparse attention window, in keys each query sees
        sinks: attention sinks (decoders) or global tokens (encoders) in sparse mode
        max_new_tokens: most tokens to generate
        truncate: cut over-long input in the middle (reported in the metrics) instead of failing
        pattern: sparse pattern: auto (sliding window + sinks for decoders, local + global for encoders) or a name"""


def _documented(handler):
    """Add the run options every task endpoint shares to its Args (the API page and MCP read them)."""
    head, returns = handler.__doc__.split("    Returns:")
    handler.__doc__ = head.rstrip() + RUN_OPTION_ARGS + "\n    Returns:" + returns
    return handler


@on_gpu
@_documented
def translate(text: str, source: str, target: str, model: str, precision: str, attention: str,
              window: float, sinks: float, max_new_tokens: float,
              truncate: bool = False, pattern: str = "auto", progress=gr.Progress()):  # fmt: skip
    """Translate text between languages with the chosen model, precision and attention.

    Args:
        text: the text to translate
        source: source language code (en, fr, de, es, it, pt)
        target: target language code, different from the source
    Returns:
        the translation (both runs, labelled, in compare mode) and the measured metrics as JSON
    """
    opts = _options(model, precision, attention, window, sinks, max_new_tokens, truncate, pattern)
    for texts, metrics in _stream(lambda: translation.build_request(text, source, target, opts), progress):
        yield streamed_text(texts), metrics


@on_gpu
@_documented
def summarize(text: str, length: str, model: str, precision: str, attention: str,
              window: float, sinks: float, max_new_tokens: float,
              truncate: bool = False, pattern: str = "auto", progress=gr.Progress()):  # fmt: skip
    """Summarize a document; long documents are where sparse attention pays.

    Args:
        text: the document
        length: short (1 sentence), medium (3) or long (6)
    Returns:
        the summary (both runs, labelled, in compare mode) and the measured metrics as JSON
    """
    opts = _options(model, precision, attention, window, sinks, max_new_tokens, truncate, pattern)
    for texts, metrics in _stream(lambda: summarization.build_request(text, length, opts), progress):
        yield streamed_text(texts), metrics


@on_gpu
@_documented
def chat(message: str, history: list, system: str, model: str, precision: str, attention: str,
         window: float, sinks: float, max_new_tokens: float,
         truncate: bool = False, pattern: str = "auto", progress=gr.Progress()):  # fmt: skip
    """Chat: answer a message given the conversation so far.

    Args:
        message: the new user message
        history: earlier turns, a list of {"role": "user" | "assistant", "content": text} messages
        system: the system prompt
    Returns:
        the history with this exchange appended (the dense answer in compare mode) and the metrics as JSON
    """
    opts = _options(model, precision, attention, window, sinks, max_new_tokens, truncate, pattern)
    history = list(history or [])
    turn = [*history, {"role": "user", "content": message}]
    for texts, metrics in _stream(lambda: dialogue.build_request(history, message, system, opts), progress):
        yield [*turn, {"role": "assistant", "content": reference_text(texts)}], metrics


def retry(history: list, system: str, model: str, precision: str, attention: str, window: float, sinks: float,
          max_new_tokens: float, truncate: bool, pattern: str, retry_data: gr.RetryData, progress=gr.Progress()):  # fmt: skip
    """Regenerate the answer to the user message at `retry_data.index`."""
    past, message = dialogue.split_at(history, retry_data.index)
    yield from chat(message, past, system, model, precision, attention, window, sinks, max_new_tokens,
                    truncate, pattern, progress)  # fmt: skip


def undo(history: list, undo_data: gr.UndoData):
    """Drop the last exchange and put its user message back in the textbox."""
    return dialogue.split_at(history, undo_data.index)


@on_gpu
@_documented
def classify(text: str, labels: str, model: str, precision: str, attention: str,
             window: float, sinks: float, max_new_tokens: float,
             truncate: bool = False, pattern: str = "auto", progress=gr.Progress()):  # fmt: skip
    """Classify text: a probability per candidate label (label likelihood for chat models, the head
    for classifiers).

    Args:
        text: the text to classify
        labels: comma-separated candidate labels, at least two
    Returns:
        the label probabilities (top label first) and the measured metrics as JSON
    """
    opts = _options(model, precision, attention, window, sinks, max_new_tokens, truncate, pattern)
    *_, final = _events(lambda: classification.build_request(text, labels, opts), progress)
    return classification.scores_of(final), metrics_dict(final)


@on_gpu
@_documented
def generate_code(prompt: str, language: str, model: str, precision: str, attention: str,
                  window: float, sinks: float, max_new_tokens: float,
                  truncate: bool = False, pattern: str = "auto", progress=gr.Progress()):  # fmt: skip
    """Generate code from a description. The code is returned, never executed by the server.

    Args:
        prompt: what the code should do
        language: programming language (python, javascript, typescript, rust, go, c, cpp, java, bash, sql)
    Returns:
        the code (the dense run's in compare mode) and the measured metrics as JSON
    """
    opts = _options(model, precision, attention, window, sinks, max_new_tokens, truncate, pattern)
    for texts, metrics in _stream(lambda: code.build_request(prompt, language, opts), progress):
        yield code.extract_code(reference_text(texts)), metrics


@on_gpu
def benchmark(model: str, precision: str, lengths: list[int], window: float, sinks: float, whole_model: bool,
              decode_tokens: float, pattern: str = "auto", progress=gr.Progress()):  # fmt: skip
    """Benchmark dense vs sparse attention across sequence lengths on one model.

    Args:
        model: a decoder model from the registry
        precision: auto, fp32, fp16, bf16, int8, nf4 or fp4
        lengths: sequence lengths in tokens (each at most the model's context)
        window: sparse attention window
        sinks: attention sink tokens
        whole_model: also time the whole model (prefill, decode, peak memory), not only the attention op
        decode_tokens: decode steps timed after each whole-model prefill
        pattern: sparse pattern for decoders: auto (sliding window + sinks) or bigbird_random
    Returns:
        attention-op ms per length and mode, whole-model prefill ms per length and mode, and the full table
    """
    opts = RunOptions(model=model, precision=precision, window=int(window), sinks=int(sinks), pattern=pattern)
    with _user_errors():
        return lab.run(lengths, whole_model, int(decode_tokens), opts, _reporter(progress))


def show_results(metrics: dict | None):
    """Metrics summary line and, in compare mode, the side-by-side view."""
    if not is_comparison(metrics):
        return metrics_summary(metrics), gr.Column(visible=False), "", "", None, None
    outputs = metrics["outputs"]
    return (
        metrics_summary(metrics),
        gr.Column(visible=True),
        outputs["dense"],
        outputs["sparse"],
        comparison_table(metrics),
        comparison_frame(metrics),
    )


def _controls(task: str) -> list:
    """Model, precision and attention controls shared by every tab (advanced under an accordion)."""
    names = [s.name for s in list_models(task)]
    with gr.Row():
        model = gr.Dropdown(names, value=DEFAULT_MODEL if DEFAULT_MODEL in names else names[0], label="Model")
        precision = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision")
        attention = gr.Radio(list(ATTENTION_MODES), value="dense", label="Attention")
    with gr.Accordion("Advanced", open=False):
        window = gr.Slider(16, 4096, value=512, step=16, label="Sparse window (keys each query sees)")
        sinks = gr.Slider(0, 64, value=4, step=1, label="Sinks (decoders) / global tokens (encoders)")
        max_new = gr.Slider(1, 1024, value=128, step=1, label="Max new tokens")
        truncate = gr.Checkbox(value=False, label="Truncate over-long input (keeps both ends; reported)")
        pattern = gr.Dropdown(["auto", *PATTERNS], value="auto", label="Sparse pattern")
    return [model, precision, attention, window, sinks, max_new, truncate, pattern]


def _results_panel() -> tuple[gr.JSON, list]:
    """Metrics panel plus the compare view (hidden unless the last run compared)."""
    summary = gr.Markdown(elem_classes="metrics-line")
    with gr.Column(visible=False) as compare:
        with gr.Row():
            dense_out = gr.Textbox(label="Dense output", lines=5, interactive=False)
            sparse_out = gr.Textbox(label="Sparse output", lines=5, interactive=False)
        table = gr.Dataframe(headers=["metric", "dense", "sparse", "sparse vs dense"], interactive=False)
        plot = gr.BarPlot(
            x="phase", y="ms", color="mode", sort=PHASE_ORDER, title="Milliseconds per phase", x_label_angle=-30
        )
    with gr.Accordion("Metrics (JSON)", open=False):
        metrics = gr.JSON(label="Metrics")
    return metrics, [summary, compare, dense_out, sparse_out, table, plot]


def _wire(triggers, fn, inputs, outputs, api_name, panel=None, progress_on=None):
    """A model-bound endpoint: one shared queue for every tab, then the results panel."""
    event = gr.on(
        triggers,
        fn,
        inputs,
        outputs,
        api_name=api_name,
        concurrency_id="model",
        concurrency_limit=CONCURRENCY,
        show_progress_on=progress_on,
    )
    if panel:
        event.success(show_results, outputs[-1], panel, api_visibility="private")
    return event


with gr.Blocks(title="Transformer Studio") as demo:
    gr.Markdown(
        "# Transformer Studio\nDense vs sparse attention at any precision, measured on every request. "
        f"The default model ({DEFAULT_MODEL}) is tiny and runs offline: fast to measure, often wrong."
    )
    with gr.Tab("Translation"):
        src_text = gr.Textbox(label="Text", lines=4)
        with gr.Row():
            source = gr.Dropdown(list(translation.LANGUAGES), value="en", label="From")
            swap = gr.Button("⇄ Swap", scale=0)
            target = gr.Dropdown(list(translation.LANGUAGES), value="fr", label="To")
        shared = _controls("translation")
        go = gr.Button("Translate", variant="primary")
        out = gr.Textbox(label="Translation", lines=4)
        metrics, panel = _results_panel()
        gr.Examples(translation.INFO.examples, [src_text, source, target])
        swap.click(lambda a, b: (b, a), [source, target], [source, target], api_visibility="private")
        _wire([go.click], translate, [src_text, source, target, *shared], [out, metrics], "translate", panel)
    with gr.Tab("Summarization"):
        doc = gr.Textbox(label="Document", lines=8)
        length = gr.Radio(list(summarization.LENGTHS), value="short", label="Length")
        shared = _controls("summarization")
        go = gr.Button("Summarize", variant="primary")
        out = gr.Textbox(label="Summary", lines=4)
        metrics, panel = _results_panel()
        gr.Examples([*summarization.INFO.examples, [summarization.long_document(), "short"]], [doc, length])
        _wire([go.click], summarize, [doc, length, *shared], [out, metrics], "summarize", panel)
    with gr.Tab("Dialogue"):
        bot = gr.Chatbot(label="Chat", height=380)
        msg = gr.Textbox(label="Message", placeholder="Type a message and press Enter")
        system = gr.Textbox(value=dialogue.DEFAULT_SYSTEM, label="System prompt")
        shared = _controls("dialogue")
        with gr.Row():
            send = gr.Button("Send", variant="primary")
            gr.ClearButton([bot, msg], value="Clear")
        metrics, panel = _results_panel()
        gr.Examples(dialogue.INFO.examples, [msg])
        inputs = [bot, system, *shared]
        # Progress and errors show on the metrics line, so a failed turn never covers the conversation.
        status = [panel[0]]
        sent = _wire([send.click, msg.submit], chat, [msg, *inputs], [bot, metrics], "chat", panel, status)
        sent.success(lambda: "", None, msg, api_visibility="private")  # keep the message if it failed
        bot.retry(
            retry, inputs, [bot, metrics], api_visibility="private", concurrency_id="model", show_progress_on=status
        ).success(show_results, metrics, panel, api_visibility="private")
        bot.undo(undo, bot, [bot, msg], api_visibility="private")
    with gr.Tab("Classification"):
        cls_text = gr.Textbox(label="Text", lines=3)
        labels = gr.Textbox(value=", ".join(classification.DEFAULT_LABELS), label="Candidate labels")
        shared = _controls("classification")
        go = gr.Button("Classify", variant="primary")
        out = gr.Label(label="Labels")
        metrics, panel = _results_panel()
        gr.Examples(classification.INFO.examples, [cls_text, labels])
        _wire([go.click], classify, [cls_text, labels, *shared], [out, metrics], "classify", panel)
    with gr.Tab("Code generation"):
        prompt = gr.Textbox(label="Describe the code", lines=3)
        language = gr.Dropdown(list(code.LANGUAGES), value="python", label="Language")
        shared = _controls("code")
        go = gr.Button("Generate", variant="primary")
        out = gr.Code(label="Code (never executed)", language="python")
        metrics, panel = _results_panel()
        gr.Examples(code.INFO.examples, [prompt, language])
        language.change(lambda lang: gr.Code(language=code.highlight_language(lang)), language, out,
                        api_visibility="private")  # fmt: skip
        _wire([go.click], generate_code, [prompt, language, *shared], [out, metrics], "generate_code", panel)
    with gr.Tab("Lab"):
        gr.Markdown(
            "Dense vs sparse attention across sequence lengths on the chosen model: the attention op alone "
            "(one layer, model shapes) and the whole model. Long lengths take a while on CPU."
        )
        with gr.Row():
            names = [s.name for s in list_models("dialogue")]
            lab_model = gr.Dropdown(names, value=DEFAULT_MODEL if DEFAULT_MODEL in names else names[0], label="Model")
            lab_precision = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision")
        lab_lengths = gr.CheckboxGroup(list(lab.LENGTHS), value=list(lab.DEFAULT_LENGTHS), label="Sequence lengths")
        with gr.Row():
            lab_window = gr.Slider(16, 4096, value=512, step=16, label="Sparse window")
            lab_sinks = gr.Slider(0, 64, value=4, step=1, label="Sinks")
            lab_whole = gr.Checkbox(value=True, label="Whole model too (prefill, decode, memory)")
            lab_decode = gr.Slider(1, 64, value=8, step=1, label="Decode tokens")
            lab_pattern = gr.Dropdown(["auto", *PATTERNS], value="auto", label="Sparse pattern")
        run_lab = gr.Button("Run benchmark", variant="primary")
        with gr.Row():
            op_plot = gr.LinePlot(x="tokens", y="ms", color="mode", title="Attention op, one layer (ms)")
            model_plot = gr.LinePlot(x="tokens", y="ms", color="mode", title="Whole-model prefill (ms)")
        lab_table = gr.Dataframe(label="Results", interactive=False)
        _wire(
            [run_lab.click],
            benchmark,
            [lab_model, lab_precision, lab_lengths, lab_window, lab_sinks, lab_whole, lab_decode, lab_pattern],
            [op_plot, model_plot, lab_table],
            "benchmark",
        )

demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=CONCURRENCY)


def launch(**kwargs):
    """Serve the app; theme and CSS go to launch() in Gradio 6."""
    mcp = "--mcp" in sys.argv[1:] or os.environ.get("STUDIO_MCP") == "1"
    options = {"theme": gr.themes.Soft(), "css": CSS, "mcp_server": mcp or None, **kwargs}
    return demo.launch(**options)


if __name__ == "__main__":
    launch()
