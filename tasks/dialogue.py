"""Dialogue: a chat history (messages format) plus a system prompt."""

from __future__ import annotations

from engine import GenerationRequest, InputError, Message, RunOptions, require_text
from engine.api.frontends import CliFlag, CliTask

from .base import TaskInfo

DEFAULT_SYSTEM = "You are a helpful assistant. Answer briefly."

INFO = TaskInfo(
    name="dialogue",
    label="Dialogue",
    description="Chat with the model; history, system prompt, retry and undo.",
    examples=[["What is the capital of France?"], ["Give me three tips for learning to cook."]],
)


def message_text(content) -> str:
    """The text of a chat message: a string (API clients) or Gradio 6's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def split_at(history: list[dict], index: int | tuple[int, int]) -> tuple[list[dict], str]:
    """For retry / undo of the user message at `index` (Gradio may give (row, column)): the turns
    before it and its text."""
    row = index if isinstance(index, int) else index[0]
    return history[:row], message_text(history[row]["content"])


def build_request(history: list[dict], message: str, system: str, options: RunOptions) -> GenerationRequest:
    require_text(message, "message")
    messages = [Message("system", system.strip())] if system.strip() else []
    for turn in history:
        text = message_text(turn.get("content"))
        if turn.get("role") in ("user", "assistant") and text:
            messages.append(Message(turn["role"], text))
    messages.append(Message("user", message))
    return GenerationRequest(options, messages=tuple(messages))


def shown_request(history: list[dict], message: str, system: str, options: RunOptions) -> GenerationRequest:
    """The request an attention map of the chat shows: the message being typed, else the last one sent
    (with the turns before it, as it was asked)."""
    if message.strip():
        return build_request(history, message, system, options)
    asked = [row for row, turn in enumerate(history) if turn.get("role") == "user"]
    if not asked:
        raise InputError("Type or send a message first: the map shows how the model reads it.")
    return build_request(*split_at(history, asked[-1]), system, options)


CLI = CliTask(
    INFO.name,
    (CliFlag("system", DEFAULT_SYSTEM, "dialogue: system prompt"),),
    lambda text, options, system: build_request([], text, system, options),
)
