"""What a caller asks of the engine: one request for any task and model family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.api.options import RunOptions


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
    # A branch: token ids the answer begins with, as if the model had picked them (an answer so far and
    # an alternative to its next token); generation continues after them. The Result's text is the
    # whole answer; its tokens, log-probabilities and metrics are those generated after the start.
    answer_start: tuple[int, ...] = ()
