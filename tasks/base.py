"""What every task shares: the run options (model, precision, attention) and task metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import DEFAULT_MODEL, GenerationRequest, InputError, Message, SparseSettings, get_spec
from engine.registry import ModelSpec


@dataclass(frozen=True)
class RunOptions:
    """The controls every tab has; field comments double as UI help text."""

    model: str = DEFAULT_MODEL  # model from the registry
    precision: str = "auto"  # fp32 / fp16 / bf16 / int8 / nf4 / fp4 / auto
    attention: str = "dense"  # dense / sparse / compare
    window: int = 512  # sparse: keys each query sees
    sinks: int = 4  # sparse: attention sinks (decoders) or global tokens (encoders)
    block_size: int = 64  # sparse: query block of the kernel
    pattern: str = "auto"  # sparse: auto (by attention kind) or a name from engine.attention.PATTERNS
    max_new_tokens: int = 128
    repetition_penalty: float = 1.0
    truncate: bool = False
    time_limit_s: float | None = None  # decoding stops after this long; the result says so

    def sparse_settings(self) -> SparseSettings:
        return SparseSettings(window=self.window, sinks=self.sinks, block_size=self.block_size, pattern=self.pattern)


@dataclass(frozen=True)
class TaskInfo:
    name: str
    label: str
    description: str
    examples: list[list] = field(default_factory=list)


def request_for(
    options: RunOptions,
    *,
    text: str | None = None,
    messages: list[Message] | None = None,
    candidates: tuple[str, ...] | None = None,
    stop: tuple[str, ...] = (),
    max_new_tokens: int | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        model=options.model,
        text=text,
        messages=tuple(messages) if messages is not None else None,
        candidates=candidates,
        max_new_tokens=max_new_tokens or options.max_new_tokens,
        repetition_penalty=options.repetition_penalty,
        stop=stop,
        precision=options.precision,
        attention=options.attention,
        sparse=options.sparse_settings(),
        truncate=options.truncate,
        time_limit_s=options.time_limit_s,
    )


def require_text(text: str | None, what: str = "text") -> str:
    """The task's main input, or a clear error when it is empty (prompt templates would hide that)."""
    if not text or not text.strip():
        raise InputError(f"The {what} is empty: type or paste some first.")
    return text


def spec_of(options: RunOptions) -> ModelSpec:
    return get_spec(options.model)


def instruct(system: str, user: str) -> list[Message]:
    return [Message("system", system), Message("user", user)]
