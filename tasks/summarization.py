"""Summarization with a length control; long inputs are where sparse attention pays."""

from __future__ import annotations

from dataclasses import replace

from engine import GenerationRequest, InputError, RunOptions, get_spec, require_text
from engine.data import long_document

from .base import Api, Input, Output, Tab, Task, instruct

LENGTHS = {"short": (1, 48), "medium": (3, 120), "long": (6, 240)}  # sentences asked for, token cap


def build_request(text: str, length: str, options: RunOptions) -> GenerationRequest:
    if length not in LENGTHS:
        raise InputError(f"Unknown summary length {length!r}; choose one of {', '.join(LENGTHS)}.")
    require_text(text, "document")
    sentences, cap = LENGTHS[length]
    spec = get_spec(options.model)
    options = replace(options, max_new_tokens=min(options.max_new_tokens, cap))
    if spec.family == "seq2seq":
        return GenerationRequest(options, text=f"summarize: {text}" if spec.text_prefixes else text)
    noun = "sentence" if sentences == 1 else "sentences"
    # The instruction goes after the document: a sliding window (sparse mode) then still sees it.
    messages = instruct(
        "You are a careful assistant who summarizes documents faithfully.",
        f"{text}\n\nSummarize the text above in {sentences} {noun}.",
    )
    return GenerationRequest(options, messages=messages)


TASK = Task(
    name="summarization",
    tab=Tab("Summarization", "Summarize a text; try the long sample document with sparse attention.", "Summarize", 20),
    inputs=(
        Input("text", "Document", "the document", lines=8),
        # The page starts short (a quick first try); the CLI's summary is read, so it asks for more.
        Input(
            "length",
            "Length",
            "short (1 sentence), medium (3) or long (6)",
            "short",
            (*LENGTHS,),
            flag_default="medium",
        ),
    ),
    builder=build_request,
    output=Output("text", "Summary"),
    api=Api(
        "summarize",
        "Summarize a document; long documents are where sparse attention pays.",
        "the summary (A and B labelled, in a comparison) and the measured metrics as JSON",
    ),
    examples=[
        [
            "The city council met on Tuesday to discuss the new park. After a long debate, members voted "
            "seven to two to fund the project, which will add playgrounds, a pond and walking paths. "
            "Construction starts in spring and should finish within a year.",
            "short",
        ],
        [long_document(), "short"],  # sparse attention at work
    ],
)
