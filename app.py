"""Transformer Studio UI: one tab per task over the shared engine. Wiring only."""

from __future__ import annotations

import os

import gradio as gr

from engine import ATTENTION_MODES, PRECISIONS, Chunk, Result, StudioError, list_models, stream_request
from engine.registry import DEFAULT_MODEL
from tasks import RunOptions, classification, code, dialogue, summarization, translation
from tasks.render import metrics_dict, output_text


def _options(model, precision, attention, window, sinks, max_new_tokens) -> RunOptions:
    return RunOptions(
        model=model,
        precision=precision,
        attention=attention,
        window=int(window),
        sinks=int(sinks),
        max_new_tokens=int(max_new_tokens),
        truncate=True,
    )


def _events(build):
    """Engine events for the request `build()` makes; user-fixable errors become gr.Error."""
    try:
        yield from stream_request(build())
    except StudioError as exc:
        raise gr.Error(str(exc)) from exc


def _stream(build):
    """Yield (text so far, metrics or None) for a generative request."""
    text = ""
    for event in _events(build):
        if isinstance(event, Chunk):
            text += event.text
            yield text, None
        else:
            yield output_text(event), metrics_dict(event)


def translate(text: str, source: str, target: str, model: str, precision: str, attention: str,
              window: float, sinks: float, max_new_tokens: float):  # fmt: skip
    """Translate `text` from `source` to `target` language codes; returns (translation, metrics JSON)."""
    opts = _options(model, precision, attention, window, sinks, max_new_tokens)
    yield from _stream(lambda: translation.build_request(text, source, target, opts))


def summarize(text: str, length: str, model: str, precision: str, attention: str,
              window: float, sinks: float, max_new_tokens: float):  # fmt: skip
    """Summarize `text` (length: short, medium, long); returns (summary, metrics JSON)."""
    opts = _options(model, precision, attention, window, sinks, max_new_tokens)
    yield from _stream(lambda: summarization.build_request(text, length, opts))


def chat(message: str, history: list, system: str, model: str, precision: str, attention: str,
         window: float, sinks: float, max_new_tokens: float):  # fmt: skip
    """Answer `message` given the chat `history` (messages format); returns (history, metrics JSON)."""
    opts = _options(model, precision, attention, window, sinks, max_new_tokens)
    history = list(history or [])
    for text, metrics in _stream(lambda: dialogue.build_request(history, message, system, opts)):
        yield [*history, {"role": "user", "content": message}, {"role": "assistant", "content": text}], metrics


def classify(text: str, labels: str, model: str, precision: str, attention: str,
             window: float, sinks: float, max_new_tokens: float):  # fmt: skip
    """Score comma-separated candidate `labels` for `text`; returns (label probabilities, metrics JSON)."""
    opts = _options(model, precision, attention, window, sinks, max_new_tokens)
    final = list(_events(lambda: classification.build_request(text, labels, opts)))[-1]
    scored = final if isinstance(final, Result) else final.sparse
    return scored.scores, metrics_dict(final)


def generate_code(prompt: str, language: str, model: str, precision: str, attention: str,
                  window: float, sinks: float, max_new_tokens: float):  # fmt: skip
    """Write `language` code for `prompt` (never executed); returns (code, metrics JSON)."""
    opts = _options(model, precision, attention, window, sinks, max_new_tokens)
    for text, metrics in _stream(lambda: code.build_request(prompt, language, opts)):
        yield code.extract_code(text), metrics


def _controls(task: str) -> list:
    """Model, precision and attention controls shared by every tab (advanced under an accordion)."""
    names = [s.name for s in list_models(task)]
    with gr.Row():
        model = gr.Dropdown(names, value=DEFAULT_MODEL if DEFAULT_MODEL in names else names[0], label="Model")
        precision = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision")
        attention = gr.Radio(list(ATTENTION_MODES), value="dense", label="Attention")
    with gr.Accordion("Advanced", open=False):
        window = gr.Slider(16, 4096, value=512, step=16, label="Sparse window")
        sinks = gr.Slider(0, 64, value=4, step=1, label="Sinks / global tokens")
        max_new = gr.Slider(1, 1024, value=128, step=1, label="Max new tokens")
    return [model, precision, attention, window, sinks, max_new]


def _wire(button, fn, inputs, outputs, api_name):
    button.click(fn, inputs, outputs, api_name=api_name, concurrency_id="model", concurrency_limit=CONCURRENCY)


CONCURRENCY = int(os.environ.get("STUDIO_CONCURRENCY", "1"))

with gr.Blocks(title="Transformer Studio") as demo:
    gr.Markdown("# Transformer Studio\nDense vs sparse attention, any precision, measured on every request.")
    with gr.Tab("Translation"):
        src_text = gr.Textbox(label="Text", lines=4)
        with gr.Row():
            source = gr.Dropdown(list(translation.LANGUAGES), value="en", label="From")
            target = gr.Dropdown(list(translation.LANGUAGES), value="fr", label="To")
            swap = gr.Button("Swap")
        shared = _controls("translation")
        go = gr.Button("Translate", variant="primary")
        out, metrics = gr.Textbox(label="Translation"), gr.JSON(label="Metrics")
        gr.Examples(translation.INFO.examples, [src_text, source, target])
        swap.click(lambda a, b: (b, a), [source, target], [source, target], api_visibility="private")
        _wire(go, translate, [src_text, source, target, *shared], [out, metrics], "translate")
    with gr.Tab("Summarization"):
        doc = gr.Textbox(label="Document", lines=8)
        length = gr.Radio(list(summarization.LENGTHS), value="short", label="Length")
        shared = _controls("summarization")
        go = gr.Button("Summarize", variant="primary")
        out, metrics = gr.Textbox(label="Summary"), gr.JSON(label="Metrics")
        gr.Examples([*summarization.INFO.examples, [summarization.long_document(), "short"]], [doc, length])
        _wire(go, summarize, [doc, length, *shared], [out, metrics], "summarize")
    with gr.Tab("Dialogue"):
        bot = gr.Chatbot(label="Chat")
        msg = gr.Textbox(label="Message")
        system = gr.Textbox(value=dialogue.DEFAULT_SYSTEM, label="System prompt")
        shared = _controls("dialogue")
        with gr.Row():
            send, clear = gr.Button("Send", variant="primary"), gr.ClearButton([bot, msg])
        metrics = gr.JSON(label="Metrics")
        gr.Examples(dialogue.INFO.examples, [msg])
        _wire(send, chat, [msg, bot, system, *shared], [bot, metrics], "chat")
    with gr.Tab("Classification"):
        cls_text = gr.Textbox(label="Text", lines=3)
        labels = gr.Textbox(value=", ".join(classification.DEFAULT_LABELS), label="Candidate labels")
        shared = _controls("classification")
        go = gr.Button("Classify", variant="primary")
        out, metrics = gr.Label(label="Labels"), gr.JSON(label="Metrics")
        gr.Examples(classification.INFO.examples, [cls_text, labels])
        _wire(go, classify, [cls_text, labels, *shared], [out, metrics], "classify")
    with gr.Tab("Code generation"):
        prompt = gr.Textbox(label="Describe the code", lines=3)
        language = gr.Dropdown(list(code.LANGUAGES), value="python", label="Language")
        shared = _controls("code")
        go = gr.Button("Generate", variant="primary")
        out, metrics = gr.Code(label="Code", language="python"), gr.JSON(label="Metrics")
        gr.Examples(code.INFO.examples, [prompt, language])
        _wire(go, generate_code, [prompt, language, *shared], [out, metrics], "generate_code")

demo.queue(max_size=int(os.environ.get("STUDIO_MAX_QUEUE", "32")))

if __name__ == "__main__":
    demo.launch()
