"""A generated token's log-probability and its position's most likely tokens, from the logits the
engine already has (no second forward): what a token view shows and the OpenAI protocol calls
`logprobs` / `top_logprobs`."""

from __future__ import annotations

import torch

from engine.api.results import Alternative, TokenLogprob


def piece(tokenizer, token: int, previous: int | None) -> str:
    """The text `token` adds after `previous` (a special token: none). Decoded alone, a SentencePiece
    token (Llama, Marian, T5) loses the space it starts with, which only shows after another token."""

    def text(ids: list[int]) -> str:  # as the answer's text is decoded: special tokens add nothing
        return tokenizer.decode(ids, skip_special_tokens=True)

    if previous is None:
        return text([token])
    head, both = text([previous]), text([previous, token])
    return both[len(head) :] if both.startswith(head) else text([token])


def token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int, previous: int | None) -> TokenLogprob:
    """`token`'s log-probability under `logits` (vocab,) and the `top` most likely tokens, best first;
    `previous`: the token before it (its text decides the spaces)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logprobs.topk(top)
    return TokenLogprob(
        token=piece(tokenizer, token, previous),
        token_id=token,
        logprob=float(logprobs[token]),
        top=[
            Alternative(piece(tokenizer, i, previous), v, i) for i, v in zip(ids.tolist(), values.tolist(), strict=True)
        ],
    )
