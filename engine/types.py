"""The dataclasses passed end to end: request in, result (with measured metrics) out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from .options import RunOptions


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One request for any task and model family: inputs plus how to run them.

    Exactly one of `text` and `messages` is set. With `candidates`, the engine scores each
    candidate label instead of generating (classification).
    """

    options: RunOptions = field(default_factory=RunOptions)
    text: str | None = None
    messages: tuple[Message, ...] | None = None
    candidates: tuple[str, ...] | None = None
    stop: tuple[str, ...] = ()
    time_limit_s: float | None = None  # the operator's limit: decoding stops after this long ("time_limit")


@dataclass
class Metrics:
    """Measured on the request (device synchronised before each clock read), never estimated."""

    prefill_ms: float
    ttft_ms: float
    decode_tokens_per_s: float | None  # None when fewer than two tokens were generated
    total_ms: float
    input_tokens: int
    new_tokens: int
    peak_memory_mb: float
    model_memory_mb: float
    device: str
    precision: str
    attention: str
    density: float = 1.0  # share of (query, key) pairs the attention computed during prefill


@dataclass
class Result:
    text: str
    metrics: Metrics
    token_ids: list[int] = field(default_factory=list)
    scores: dict[str, float] | None = None  # classification: label -> probability
    truncated_tokens: int = 0  # input tokens cut to fit the context (0 = nothing cut)
    finish_reason: Literal["stop", "length", "scored", "time_limit"] = "stop"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    """Compare mode: the same request run dense then sparse, and how they differ."""

    dense: Result
    sparse: Result
    prefill_speedup: float
    decode_speedup: float | None
    total_speedup: float
    token_agreement: float  # share of positions with identical tokens
    first_divergence: int | None  # index of the first differing new token, None if identical
    density: float  # share of (query, key) pairs the sparse run computed in prefill
    score_agreement: float | None = None  # classification: 1 - total variation distance

    def to_dict(self) -> dict:
        return asdict(self)
