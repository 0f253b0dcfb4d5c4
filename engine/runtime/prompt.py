"""Request inputs -> token ids, with the context-length policy in one place.

User text is data: a control string a user types (a chat template's `<|im_start|>`, BOS, EOS) is
tokenized as the text it is (transformers' `split_special_tokens`), never as the control token, so a
message cannot forge a system or an assistant turn. The template's own control tokens stay where the
template puts them: it is rendered around a placeholder per message, and each message's content is
tokenized as text in its place."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import torch

from engine.api.request import GenerationRequest, Message
from engine.models.loader import LoadedModel
from engine.platform.errors import ContextLengthError


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (1, n)
    truncated_tokens: int


# Private-use characters stand in for each message's content while the template renders.
_SLOT = "\ue000{}\ue001"
_SLOTS = re.compile("(\ue000\\d+\ue001)")
log = logging.getLogger(__name__)


def as_text(tokenizer: Any, text: str, add_special_tokens: bool = False) -> list[int]:
    """Ids of `text` read as text: control strings in it are not control tokens."""
    return list(tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True)["input_ids"])


def _chat_ids(tokenizer: Any, messages: tuple[Message, ...]) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        # No template: a plain transcript that ends where the assistant should speak.
        return as_text(tokenizer, "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant:", True)
    slots = {_SLOT.format(i): m.content for i, m in enumerate(messages)}
    chat = [{"role": m.role, "content": slot} for m, slot in zip(messages, slots, strict=True)]
    pieces = _SLOTS.split(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))
    as_rendered = [{"role": m.role, "content": m.content} for m in messages]
    if "".join(slots.get(piece, piece) for piece in pieces) != tokenizer.apply_chat_template(
        as_rendered, add_generation_prompt=True, tokenize=False
    ):
        # A template that does not place each content as it is (it trims or rewrites it): its own way
        log.warning("the chat template rewrites message contents; control strings in them stay control tokens")
        encoded = tokenizer.apply_chat_template(as_rendered, add_generation_prompt=True, return_dict=True)
        return list(encoded["input_ids"])
    ids: list[int] = []
    for i in range(0, len(pieces), 2):  # template text, then a content (the last piece: template text)
        template, content = pieces[i], slots[pieces[i + 1]] if i + 1 < len(pieces) else ""
        # Spaces before a content go with it, as when the whole prompt is tokenized (" hello": one token)
        spaces = len(template) - len(template.rstrip(" ")) if content else 0
        ids += tokenizer(template[: len(template) - spaces], add_special_tokens=False)["input_ids"]
        ids += as_text(tokenizer, template[len(template) - spaces :] + content) if content else []
    return ids


def encode(loaded: LoadedModel, request: GenerationRequest, reserve: int) -> Encoded:
    """Tokenize; if input + `reserve` (tokens still to come) exceed the context, fail or cut the middle."""
    tokenizer = loaded.tokenizer
    if request.messages is not None:
        ids = _chat_ids(tokenizer, request.messages)
    else:  # exactly one of text and messages (engine.api.validation)
        ids = as_text(tokenizer, request.text or "", add_special_tokens=True)  # BOS / EOS as the model expects
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
