"""Dialogue: a chat history (messages format) plus a system prompt."""

from __future__ import annotations

from engine import GenerationRequest, InputError, Message

from .base import RunOptions, TaskInfo, request_for, spec_of

DEFAULT_SYSTEM = "You are a helpful assistant. Answer briefly."

INFO = TaskInfo(
    name="dialogue",
    label="Dialogue",
    description="Chat with the model; history, system prompt, retry and undo.",
    examples=[["What is the capital of France?"], ["Give me three tips for learning to cook."]],
)


def build_request(history: list[dict], message: str, system: str, options: RunOptions) -> GenerationRequest:
    if spec_of(options).family != "causal":
        raise InputError(f"{options.model} is not a chat model; pick a causal (chat) model for dialogue.")
    if not message.strip():
        raise InputError("The message is empty: type something first.")
    messages = [Message("system", system.strip())] if system.strip() else []
    for turn in history:
        if turn.get("role") in ("user", "assistant") and isinstance(turn.get("content"), str):
            messages.append(Message(turn["role"], turn["content"]))
    messages.append(Message("user", message))
    return request_for(options, messages=messages)
