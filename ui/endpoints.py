"""Endpoints: a handler built from a declaration (every run option a parameter after its own inputs,
typed and documented from engine.OPTIONS), and the one boundary where our errors become gr.Error."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import gradio as gr

from engine import (
    OPTIONS,
    AttentionMap,
    Chunk,
    GenerationRequest,
    InputError,
    Option,
    RunOptions,
    StudioError,
    attention_map,
    options_from,
    precheck,
    settings,
    stream_request,
    to_payload,
)
from tasks import Task
from tasks.render import attention_image

from .branches import branch_point, branched

PARAMETER = inspect.Parameter.POSITIONAL_OR_KEYWORD
OPTION_PARAMETERS = [
    inspect.Parameter(o.name, PARAMETER, default=o.default, annotation=o.type | None if o.nullable else o.type)
    for o in OPTIONS
]
Build = Callable[[dict[str, Any], RunOptions], GenerationRequest]  # (own inputs by name, options) -> request
Run = Callable[[dict[str, Any], GenerationRequest, gr.Progress], Iterator]  # -> the outputs, as they come


@contextmanager
def user_errors() -> Iterator[None]:
    """User-fixable errors become gr.Error: a message on the page; it and every other request carry on."""
    try:
        yield
    except StudioError as exc:
        raise gr.Error(str(exc)) from exc


def reporter(progress: gr.Progress) -> Callable[[float, str], None]:
    return lambda fraction, message: progress(fraction, desc=message)


def options_of(values: Mapping[str, Any]) -> RunOptions:
    """The run options from their controls' values by name, as a user error when they are wrong."""
    with user_errors():
        return options_from(values)


def with_options_doc(doc: str, options: Sequence[Option]) -> str:
    """Append the options' one-line help to a docstring's Args (the API page and MCP read them)."""
    head, returns = doc.split("    Returns:")
    lines = "".join(f"\n        {o.name}: {o.help}" for o in options)
    return head.rstrip() + lines + "\n    Returns:" + returns


def endpoint(name: str, doc: str, own: Sequence[inspect.Parameter], build: Build, run: Run) -> Callable[..., Iterator]:
    """A handler with the `own` parameters, then every run option, then progress; its docstring is
    `doc` (summary, Args of its own, Returns) with the options' help added. `build` makes the request
    `run` receives. The same build is the event's validator (`handler.validator`), which Gradio runs
    before the request joins the queue: a request the engine would refuse (engine.precheck) never
    takes a slot. `handler.branch` continues an answer it gave from an alternative token (ui.branches)."""
    inputs = [*own, *OPTION_PARAMETERS]
    signature = inspect.Signature([*inputs, inspect.Parameter("progress", PARAMETER, default=gr.Progress())])

    def bound(args: tuple, kwargs: dict) -> tuple[dict[str, Any], GenerationRequest, gr.Progress]:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        values = {p.name: arguments.arguments[p.name] for p in own}
        options = options_from({o.name: arguments.arguments[o.name] for o in OPTIONS})
        return values, build(values, options), arguments.arguments["progress"]

    def handler(*args: Any, **kwargs: Any) -> Iterator:
        with user_errors():
            values, request, progress = bound(args, kwargs)
        yield from run(values, replace(request, time_limit_s=settings().time_limit_s), progress)

    def branch(asked: list | None, metrics: dict | None, clicked: gr.EventData, progress: gr.Progress = gr.Progress()) -> Iterator:  # fmt: skip
        """The answer in `metrics` continued from the alternative clicked in its token view (ui.branches),
        asked again with its inputs (`asked`: the endpoint's arguments, in order)."""
        with user_errors():
            if not asked:
                raise InputError("Run the request first: a branch continues its answer.")
            values, request, _ = bound(tuple(asked), {})
            point = branch_point(metrics, clicked._data)
        request = replace(request, answer_start=point.start, time_limit_s=settings().time_limit_s)
        yield from branched(run(values, request, progress), point)

    def validator(*args: Any, **kwargs: Any) -> list[dict]:
        """One gr.validate per input: the reason on the first, where the page shows it."""
        try:
            precheck(bound(args, kwargs)[1])
        except StudioError as exc:
            return [gr.validate(False, str(exc)), *(gr.validate(True, "") for _ in inputs[1:])]
        return [gr.validate(True, "") for _ in inputs]

    handler.__name__ = handler.__qualname__ = branch.__name__ = branch.__qualname__ = name  # the history's task
    handler.__signature__ = signature
    handler.__annotations__ = {p.name: p.annotation for p in inputs}
    handler.__doc__ = with_options_doc(doc, OPTIONS)
    validator.__signature__ = inspect.Signature(inputs)
    handler.validator = validator
    handler.branch = branch
    return handler


def events(request: GenerationRequest, progress: gr.Progress) -> Iterator:
    """Engine events for the request."""
    with user_errors():
        yield from stream_request(request, progress=reporter(progress))


# The text so far goes to the page at most this often (the first token at once): each update is
# rendered, diffed and sent by Python holding the GIL the decode loop needs, and at ~50 tokens/s the
# page gains nothing from one per token.
STREAM_INTERVAL_S = 0.1


class LiveSpeed:
    """While an answer streams, per run (a comparison streams its runs one after another): its pieces
    of text so far (a token each, as the engine and llama.cpp's server stream them, but for text held
    back near a stop string or a split character), the time to the first from when the run began (the
    request's start, or the previous run's last piece) and the rate since."""

    def __init__(self) -> None:
        self.stream = uuid.uuid4().hex  # names this answer's updates (a late one after Stop is dropped: ui.results)
        self.last = time.perf_counter()  # the latest piece of any run, or the start
        self.began: dict[str, float] = {}
        self.first: dict[str, float] = {}
        self.pieces: dict[str, int] = {}

    def add(self, run: str) -> None:
        now = time.perf_counter()
        if run not in self.first:
            self.began[run], self.first[run] = self.last, now
        self.pieces[run] = self.pieces.get(run, 0) + 1
        self.last = now

    def payload(self) -> dict[str, Any]:
        """The metrics JSON while streaming: {"streaming": {run: {tokens, ttft_ms, tokens_per_s}}, "stream": id}."""
        now = time.perf_counter()
        return {
            "stream": self.stream,
            "streaming": {
                run: {
                    "tokens": count,
                    "ttft_ms": (self.first[run] - self.began[run]) * 1000,
                    "tokens_per_s": (count - 1) / (now - self.first[run]) if count > 1 else None,
                }
                for run, count in self.pieces.items()
            },
        }


def task_endpoint(task: Task) -> Callable[..., Iterator]:
    """The task's endpoint: yields (its output as rendered so far, the metrics JSON): while the answer
    streams, the live speed (`LiveSpeed.payload`); once the result is in, its metrics."""

    def run(values: dict[str, Any], request: GenerationRequest, progress: gr.Progress) -> Iterator[tuple]:
        texts: dict[str, str] = {}
        live = LiveSpeed()
        shown = 0.0  # when the page was last sent the text so far
        for event in events(request, progress):
            if isinstance(event, Chunk):
                texts[event.run] = texts.get(event.run, "") + event.text
                live.add(event.run)
                if time.monotonic() - shown >= STREAM_INTERVAL_S:
                    shown = time.monotonic()
                    yield task.render(values, texts, None), live.payload()
            else:
                yield task.render(values, texts, event), to_payload(event)

    args = "".join(f"\n        {i.name}: {i.help}" for i in task.inputs)
    summary = task.api.summary.replace("\n", "\n    ")
    doc = f"{summary}\n\n    Args:{args}\n    Returns:\n        {task.api.returns}\n    "
    own = [inspect.Parameter(i.name, PARAMETER, annotation=i.type) for i in task.inputs]
    return endpoint(task.api.name, doc, own, lambda values, options: task.builder(*values.values(), options), run)


def attention_picture(request: GenerationRequest, layer: int, head: int, progress: gr.Progress) -> tuple:
    """(image, data) of the attention map of the request."""
    with user_errors():
        found: AttentionMap = attention_map(request, int(layer), int(head), progress=reporter(progress))
    return attention_image(found), found.to_dict()
