"""A task from outside this project: one module, registered by its package's entry point
(tests/app/test_extra_task.py writes that package's metadata)."""

from __future__ import annotations

from engine import GenerationRequest, InputError, RunOptions, require_text
from tasks import Api, Input, Output, Tab, Task


def build_request(text: str, times: str, options: RunOptions) -> GenerationRequest:
    require_text(text)
    if not times.isdigit() or not 1 <= int(times) <= 5:
        raise InputError(f"times must be a whole number from 1 to 5 (got {times!r}).")
    return GenerationRequest(options, text=" ".join([text.upper()] * int(times)))


TASK = Task(
    name="shout",
    tab=Tab("Shout", "The model goes on from your text, shouted.", "Shout"),
    inputs=(
        Input("text", "Text", "what to shout"),
        Input("times", "Times", "how many times to shout it", default="2", choices=("1", "2", "3")),
    ),
    builder=build_request,
    output=Output("text", "Continuation"),
    api=Api("shout", "Continue a text, shouted.", "the continuation and the measured metrics as JSON"),
    models_of="dialogue",  # the chat models run it
    examples=[["hello there", "2"]],
)
