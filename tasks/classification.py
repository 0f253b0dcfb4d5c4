"""Classification: probabilities over candidate labels, from a classifier head or from a chat
model's likelihood of each label as its answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import Comparison, GenerationRequest, Result, RunOptions, check_labels, get_spec, require_text

from .base import Api, Input, Output, Tab, Task, instruct

DEFAULT_LABELS = ("positive", "negative", "neutral")
LABELS = ", ".join(DEFAULT_LABELS)  # as typed in the box


def parse_labels(labels: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return check_labels(labels.split(",") if isinstance(labels, str) else labels)


def scores_of(values: Mapping[str, Any], texts: Mapping[str, str], final: Result | Comparison | None) -> dict:
    """Label probabilities of the run, or of A in a comparison (scoring streams no text: only the final)."""
    assert final is not None  # scoring streams no text, so render only ever sees the final result
    return (final if isinstance(final, Result) else final.a).scores or {}


def build_request(text: str, labels: str | list[str] | tuple[str, ...], options: RunOptions) -> GenerationRequest:
    require_text(text)
    candidates = parse_labels(labels)
    if get_spec(options.model).family == "classifier":
        return GenerationRequest(options, text=text, candidates=candidates)
    # Measured on the embedded 135M model: asking the question after the text scored best
    # (5 of 7 hand-labelled sentiment examples; the label-list-first wording scored 2 of 7).
    messages = instruct(
        "You are a precise sentiment classifier.",
        f"Text: {text}\n\nIs this text {', '.join(candidates[:-1])} or {candidates[-1]}? Answer with one word.",
    )
    return GenerationRequest(options, messages=messages, candidates=candidates)


TASK = Task(
    name="classification",
    tab=Tab("Classification", "Score candidate labels (default: sentiment).", "Classify", 40),
    inputs=(
        Input("text", "Text", "the text to classify", lines=3),
        Input("labels", "Candidate labels", "comma-separated candidate labels, at least two", LABELS),
    ),
    builder=build_request,
    output=Output("label", "Labels"),
    api=Api(
        "classify",
        "Classify text: a probability per candidate label (label likelihood for chat models, the head\n"
        "for classifiers). Sampling options do not apply: labels are scored, not generated.",
        "the label probabilities (top label first) and the measured metrics as JSON",
    ),
    render=scores_of,
    generates=False,
    examples=[
        ["Great service, friendly staff, I will come back!", "positive, negative, neutral"],
        ["This was the worst meal I have ever had. Terrible.", "positive, negative, neutral"],
    ],
)
