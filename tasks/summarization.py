"""Summarization with a length control; long inputs are where sparse attention pays."""

from __future__ import annotations

from pathlib import Path

from engine import GenerationRequest, InputError

from .base import RunOptions, TaskInfo, instruct, request_for, require_text, spec_of

LENGTHS = {"short": (1, 48), "medium": (3, 120), "long": (6, 240)}  # sentences asked for, token cap
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def long_document() -> str:
    return (ASSETS / "long_document.txt").read_text()


INFO = TaskInfo(
    name="summarization",
    label="Summarization",
    description="Summarize a text; try the long sample document with sparse attention.",
    examples=[
        [
            "The city council met on Tuesday to discuss the new park. After a long debate, members voted "
            "seven to two to fund the project, which will add playgrounds, a pond and walking paths. "
            "Construction starts in spring and should finish within a year.",
            "short",
        ],
    ],
)


def build_request(text: str, length: str, options: RunOptions) -> GenerationRequest:
    if length not in LENGTHS:
        raise InputError(f"Unknown summary length {length!r}; choose one of {', '.join(LENGTHS)}.")
    require_text(text, "document")
    sentences, cap = LENGTHS[length]
    spec = spec_of(options)
    max_new = min(options.max_new_tokens, cap)
    if spec.family == "seq2seq":
        prefixed = f"summarize: {text}" if spec.text_prefixes else text
        return request_for(options, text=prefixed, max_new_tokens=max_new)
    noun = "sentence" if sentences == 1 else "sentences"
    # The instruction goes after the document: a sliding window (sparse mode) then still sees it.
    messages = instruct(
        "You are a careful assistant who summarizes documents faithfully.",
        f"{text}\n\nSummarize the text above in {sentences} {noun}.",
    )
    return request_for(options, messages=messages, max_new_tokens=max_new)
