"""Classification: probabilities over candidate labels, from a classifier head or from a chat
model's likelihood of each label as its answer."""

from __future__ import annotations

from engine import Comparison, GenerationRequest, InputError, Result

from .base import RunOptions, TaskInfo, instruct, request_for, require_text, spec_of

DEFAULT_LABELS = ("positive", "negative", "neutral")

INFO = TaskInfo(
    name="classification",
    label="Classification",
    description="Score candidate labels (default: sentiment).",
    examples=[
        ["Great service, friendly staff, I will come back!", "positive, negative, neutral"],
        ["This was the worst meal I have ever had. Terrible.", "positive, negative, neutral"],
    ],
)


def parse_labels(labels: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = labels.split(",") if isinstance(labels, str) else labels
    parsed = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if len(parsed) < 2:
        raise InputError("Give at least two different candidate labels, separated by commas.")
    return parsed


def scores_of(final: Result | Comparison) -> dict[str, float]:
    """Label probabilities of the reference run (the dense one in compare mode)."""
    return (final if isinstance(final, Result) else final.dense).scores or {}


def build_request(text: str, labels: str | list[str] | tuple[str, ...], options: RunOptions) -> GenerationRequest:
    require_text(text)
    candidates = parse_labels(labels)
    spec = spec_of(options)
    if spec.family == "classifier":
        return request_for(options, text=text, candidates=candidates)
    if spec.family != "causal":
        raise InputError(f"{spec.name} cannot classify; pick a chat model or a classifier.")
    # Measured on the embedded 135M model: asking the question after the text scored best
    # (5 of 7 hand-labelled sentiment examples; the label-list-first wording scored 2 of 7).
    messages = instruct(
        "You are a precise sentiment classifier.",
        f"Text: {text}\n\nIs this text {', '.join(candidates[:-1])} or {candidates[-1]}? Answer with one word.",
    )
    return request_for(options, messages=messages, candidates=candidates)
