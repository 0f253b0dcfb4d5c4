"""Every rule about a request, each written once; `validate` is the engine's front door."""

from __future__ import annotations

import torch

from .errors import InputError
from .options import RunOptions, check_options
from .precision import check_supported
from .registry import ModelSpec, get_spec
from .types import GenerationRequest


def require_text(value: str | None, what: str = "input") -> str:
    """The rule for every text a user types (tasks apply it to their raw inputs before templating)."""
    if not value or not value.strip():
        raise InputError(f"The {what} is empty: type or paste some first.")
    return value


def check_labels(labels: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Candidate labels stripped and de-duplicated in order; at least two."""
    unique = tuple(dict.fromkeys(label.strip() for label in labels if label.strip()))
    if len(unique) < 2:
        raise InputError("Give at least two different candidate labels, separated by commas.")
    return unique


def validate_options(options: RunOptions, device: torch.device) -> None:
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


def validate(request: GenerationRequest, device: torch.device) -> None:
    """The engine's front door: every rule about a request, checked once."""
    validate_options(request.options, device)
    if (request.text is None) == (request.messages is None):
        raise InputError("Give either text or chat messages (exactly one).")
    if request.text is not None:
        require_text(request.text)
    elif not any(m.content.strip() for m in request.messages if m.role == "user"):
        raise InputError("The conversation has no user message: type a message first.")
    if request.time_limit_s is not None and request.time_limit_s <= 0:
        raise InputError(f"time_limit_s must be positive (got {request.time_limit_s}).")
    if request.candidates is not None:
        check_labels(request.candidates)
    check_family(get_spec(request.options.model), request)
