"""Request inputs -> token ids, with the context-length policy in one place."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.api.request import GenerationRequest, Message
from engine.models.loader import LoadedModel
from engine.platform.errors import ContextLengthError


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


def encode(loaded: LoadedModel, request: GenerationRequest, reserve: int) -> Encoded:
    """Tokenize; if input + `reserve` (tokens still to come) exceed the context, fail or cut the middle."""
    tokenizer = loaded.tokenizer
    if request.messages is not None:
        ids = _chat_ids(tokenizer, request.messages)
    else:
        ids = tokenizer(request.text)["input_ids"]
    assert loaded.spec.context_length is not None  # the loader always fills it in (LoadedModel.spec)
    limit = loaded.spec.context_length - reserve
    cut = 0
    if len(ids) > limit:
        if not request.options.truncate or limit < 8:
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
