"""Classification: probabilities over candidate labels, from a classifier head or from a chat
model's likelihood of each label as its answer."""

from __future__ import annotations

from engine import GenerationRequest, InputError

from .base import RunOptions, TaskInfo, instruct, request_for, spec_of

DEFAULT_LABELS = ("positive", "negative", "neutral")

INFO = TaskInfo(
    name="classification",
    label="Classification",
    description="Score candidate labels (default: sentiment).",
    examples=[
        ["I absolutely loved this movie, it was wonderful!", "positive, negative, neutral"],
        ["This was the worst meal I have ever had. Terrible.", "positive, negative, neutral"],
    ],
)


def parse_labels(labels: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = labels.split(",") if isinstance(labels, str) else labels
    parsed = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if len(parsed) < 2:
        raise InputError("Give at least two different candidate labels, separated by commas.")
    return parsed


def build_request(text: str, labels: str | list[str] | tuple[str, ...], options: RunOptions) -> GenerationRequest:
    candidates = parse_labels(labels)
    spec = spec_of(options)
    if spec.family == "classifier":
        return request_for(options, text=text, candidates=candidates)
    if spec.family != "causal":
        raise InputError(f"{spec.name} cannot classify; pick a chat model or a classifier.")
    messages = instruct(
        "You are a precise text classifier.",
        f"Classify the text into one of these labels: {', '.join(candidates)}.\n\nText: {text}\n\n"
        "Answer with the label only.",
    )
    return request_for(options, messages=messages, candidates=candidates)
