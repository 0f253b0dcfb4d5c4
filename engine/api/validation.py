"""Every rule about a request, each written once: `validate` holds those that hold whatever runs it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from engine.api.options import PATTERN_CHOICES, RunOptions, check_options
from engine.api.request import GenerationRequest
from engine.models.precision import check_supported
from engine.models.registry import ModelSpec
from engine.platform.errors import InputError


def require_text(value: str | None, what: str = "input") -> str:
    """The rule for every text a user types (tasks apply it to their raw inputs before templating)."""
    if not value or not value.strip():
        raise InputError(f"The {what} is empty: type or paste some first.")
    return value


MAX_LABELS = 20  # each label is scored by its own forward pass: 300 held the engine for 124 s


def check_labels(labels: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Candidate labels stripped and de-duplicated in order; at least two, at most MAX_LABELS."""
    unique = tuple(dict.fromkeys(label.strip() for label in labels if label.strip()))
    if len(unique) < 2:
        raise InputError("Give at least two different candidate labels, separated by commas.")
    if len(unique) > MAX_LABELS:
        raise InputError(
            f"Give at most {MAX_LABELS} candidate labels (got {len(unique)}): each one is scored separately."
        )
    return unique


def validate_options(options: RunOptions, device: torch.device) -> None:
    """The options' rules and this device's precisions: what the Lab and the benchmarks (local runs) check."""
    check_options(options)
    check_supported(options.precision, device)


def check_family(spec: ModelSpec, request: GenerationRequest) -> None:
    """What each model family can do; run before loading when the registry knows the family, else after."""
    family = spec.family
    if family is None:
        return
    if request.candidates is not None and family not in ("causal", "classifier"):
        raise InputError(f"{spec.name} is a {family} model: it cannot score labels; pick a chat model or a classifier.")
    if request.candidates is None and family == "classifier":
        raise InputError(f"{spec.name} is a classifier: it can only score labels, not generate text.")
    if request.messages is not None and family == "seq2seq":
        raise InputError(f"{spec.name} is a seq2seq model: it takes text, not a chat; pick a causal (chat) model.")
    if family == "seq2seq" and request.candidates is None and _speculates(request.options):
        raise InputError(
            f"{spec.name} is a seq2seq model, whose decoder does not speculate (speculation checks guesses "
            "for causal models only): choose speculation none."
        )


def _speculates(options: RunOptions) -> bool:
    return options.speculation != "none" or options.compare == "speculation"


@dataclass(frozen=True)
class Sides:
    """The two settings of an A/B comparison: identical but for `axis`, both greedy. Precisions stay as
    asked (`auto` too): the backend that runs a side resolves what it means (engine.backends)."""

    axis: str  # attention | precision | model | speculation
    a: RunOptions
    b: RunOptions
    a_label: str  # attention: what each side runs; else the labels follow the served sides (`labels`)
    b_label: str

    def labels(self, a: RunOptions, b: RunOptions) -> tuple[str, str]:
        """The labels of the sides as served (`a`, `b`): what ran ("fp32", not "auto")."""
        labels = (
            (self.a_label, self.b_label) if self.axis == "attention" else (getattr(a, self.axis), getattr(b, self.axis))
        )
        if labels[0] == labels[1]:  # an A/A test: the same settings twice
            return f"{labels[0]} (A)", f"{labels[1]} (B)"
        return labels


def _attention_label(options: RunOptions) -> str:
    if options.attention == "dense":
        return "dense"
    return "sparse" if options.pattern == "auto" else options.pattern


def compare_sides(options: RunOptions) -> Sides | None:
    """A and B of the experiment the options ask for (None: a single run). `attention=compare` is
    dense vs sparse; otherwise `compare` names the axis and `compare_with` B's value."""
    if not options.compares:
        return None
    base = replace(options, temperature=0.0, compare="none", compare_with="")
    if options.attention == "compare":
        if options.compare != "none":
            raise InputError("attention=compare already compares dense with sparse: set compare to none.")
        return Sides(
            "attention", replace(base, attention="dense"), replace(base, attention="sparse"), "dense", "sparse"
        )
    value = options.compare_with.strip()
    if not value:
        raise InputError(f"compare={options.compare} needs compare_with: B's {options.compare}.")
    if options.compare != "attention":  # precision, model, speculation: B's value of that option
        b_value: dict[str, Any] = {options.compare: value}
        return Sides(options.compare, base, replace(base, **b_value), "", "")
    patterns = [p for p in PATTERN_CHOICES if p != "auto"]
    if value not in ("dense", "sparse", *patterns):
        raise InputError(f"compare_with for attention is dense, sparse or a pattern ({', '.join(patterns)}).")
    b = (
        replace(base, attention=value)
        if value in ("dense", "sparse")
        else replace(base, attention="sparse", pattern=value)
    )
    return Sides("attention", base, b, _attention_label(base), value)


def validate(request: GenerationRequest) -> Sides | None:
    """Every rule about a request that holds whatever runs it, checked once; the backend that runs it
    adds its own (engine.backends: the device's precisions, the model's family, a server's limits).
    Returns the two sides when the request is a comparison (None: a single run)."""
    check_options(request.options)
    sides = compare_sides(request.options)
    if sides is not None:
        check_options(sides.b)
    if (request.text is None) == (request.messages is None):
        raise InputError("Give either text or chat messages (exactly one).")
    if request.text is not None:
        require_text(request.text)
    elif not any(m.content.strip() for m in request.messages or () if m.role == "user"):
        raise InputError("The conversation has no user message: type a message first.")
    for side in (request.options,) if sides is None else (sides.a, sides.b):
        if side.speculation != "none" and side.attention != "dense":
            raise InputError(  # sparse patterns pick each query's keys by rules a run of guesses would need its own of
                "speculation checks its guessed tokens with dense attention: choose attention dense or speculation none."
            )
    if request.time_limit_s is not None and request.time_limit_s <= 0:
        raise InputError(f"time_limit_s must be positive (got {request.time_limit_s}).")
    if request.candidates is not None:
        check_labels(request.candidates)
    if request.answer_start:
        check_answer_start(request, sides)
    return sides


def check_answer_start(request: GenerationRequest, sides: Sides | None) -> None:
    """A branch continues one generated answer from token ids the model knows (its vocabulary is
    checked where it is loaded: engine.runtime.decoding)."""
    if request.candidates is not None or sides is not None:
        raise InputError("A branch continues one generated answer: not a comparison nor label scoring.")
    if any(not isinstance(i, int) or i < 0 for i in request.answer_start):
        raise InputError("answer_start holds token ids: whole numbers from 0.")
    if len(request.answer_start) > MAX_ANSWER_START:
        raise InputError(f"A branch starts at most {MAX_ANSWER_START} tokens into an answer.")


MAX_ANSWER_START = 4096  # tokens; an answer's own limit (max_new_tokens) is lower
