"""Dialogue: a chat history (messages format) plus a system prompt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import Comparison, GenerationRequest, InputError, Message, Result, RunOptions, require_text

from .base import Api, Input, Output, Tab, Task, message_text, reference_text, split_at

DEFAULT_SYSTEM = "You are a helpful assistant. Answer briefly."
HISTORY_HELP = 'earlier turns, a list of {"role": "user" | "assistant", "content": text} messages'


def build_request(message: str, history: list[dict], system: str, options: RunOptions) -> GenerationRequest:
    require_text(message, "message")
    messages = [Message("system", system.strip())] if system.strip() else []
    for turn in history or ():
        text = message_text(turn.get("content"))
        if turn.get("role") in ("user", "assistant") and text:
            messages.append(Message(turn["role"], text))
    messages.append(Message("user", message))
    return GenerationRequest(options, messages=tuple(messages))


def shown_request(message: str, history: list[dict], system: str, options: RunOptions) -> GenerationRequest:
    """The request an attention map of the chat shows: the message being typed, else the last one sent
    (with the turns before it, as it was asked)."""
    if message.strip():
        return build_request(message, history, system, options)
    asked = [row for row, turn in enumerate(history) if turn.get("role") == "user"]
    if not asked:
        raise InputError("Type or send a message first: the map shows how the model reads it.")
    before, sent = split_at(history, asked[-1])
    return build_request(sent, before, system, options)


def conversation(values: Mapping[str, Any], texts: Mapping[str, str], final: Result | Comparison | None) -> list:
    """The history with this exchange appended (A's answer in a comparison)."""
    turn = [*(values["history"] or []), {"role": "user", "content": values["message"]}]
    return [*turn, {"role": "assistant", "content": reference_text(texts)}]


TASK = Task(
    name="dialogue",
    tab=Tab("Dialogue", "Chat with the model; history, system prompt, retry and undo.", "Send", 30, layout="chat"),
    inputs=(
        Input("message", "Message", "the new user message", placeholder="Type a message and press Enter"),
        Input("history", "Chat", HISTORY_HELP, type=list, default=(), flag=False),
        Input("system", "System prompt", "the system prompt", default=DEFAULT_SYSTEM),
    ),
    builder=build_request,
    output=Output("chat", "Chat"),
    api=Api(
        "chat",
        "Chat: answer a message given the conversation so far.",
        "the history with this exchange appended (A's answer in a comparison) and the metrics as JSON",
    ),
    render=conversation,
    map_builder=shown_request,
    examples=[["What is the capital of France?"], ["Give me three tips for learning to cook."]],
)
