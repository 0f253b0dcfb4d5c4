"""Request inputs -> token ids, with the context-length policy in one place."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ContextLengthError, InputError
from .loader import LoadedModel
from .types import GenerationRequest, Message


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (1, n)
    truncated_tokens: int


def _chat_ids(tokenizer, messages: tuple[Message, ...]) -> list[int]:
    chat = [{"role": m.role, "content": m.content} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(ids["input_ids"])
    # No template: a plain transcript that ends where the assistant should speak.
    text = "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant:"
    return tokenizer(text)["input_ids"]


def validate_inputs(request: GenerationRequest) -> None:
    if (request.text is None) == (request.messages is None):
        raise InputError("Give either text or chat messages (exactly one).")
    if request.text is not None and not request.text.strip():
        raise InputError("The input is empty: type some text first.")
    if request.messages is not None and not any(m.content.strip() for m in request.messages if m.role == "user"):
        raise InputError("The conversation has no user message: type a message first.")
    if request.max_new_tokens < 1 and request.candidates is None:
        raise InputError(f"max_new_tokens must be at least 1 (got {request.max_new_tokens}).")
    if request.time_limit_s is not None and request.time_limit_s <= 0:
        raise InputError(f"time_limit_s must be positive (got {request.time_limit_s}).")
    if request.candidates is not None and len([c for c in request.candidates if c.strip()]) < 2:
        raise InputError("Classification needs at least two non-empty candidate labels.")


def encode(loaded: LoadedModel, request: GenerationRequest, reserve: int) -> Encoded:
    """Tokenize; if input + `reserve` (tokens still to come) exceed the context, fail or cut the middle."""
    tokenizer = loaded.tokenizer
    if request.messages is not None:
        ids = _chat_ids(tokenizer, request.messages)
    else:
        ids = tokenizer(request.text)["input_ids"]
    limit = loaded.spec.context_length - reserve
    cut = 0
    if len(ids) > limit:
        if not request.truncate or limit < 8:
            raise ContextLengthError(
                f"The input is {len(ids)} tokens but {loaded.spec.name} fits {loaded.spec.context_length} "
                f"(with {reserve} reserved for the output, at most {max(limit, 0)}): shorten it, lower max new "
                "tokens, or allow truncation."
            )
        # Keep both ends: instructions and the chat template sit at the start and the end.
        head = limit // 2
        cut = len(ids) - limit
        ids = ids[:head] + ids[len(ids) - (limit - head) :]
    return Encoded(torch.tensor([ids], dtype=torch.long, device=loaded.device), cut)
