"""A generated token's log-probability and its position's most likely tokens, from the logits the
engine already has (no second forward): what a token view shows and the OpenAI protocol calls
`logprobs` / `top_logprobs`."""

from __future__ import annotations

import torch

from engine.api.results import Alternative, TokenLogprob


def token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """`token`'s log-probability under `logits` (vocab,) and the `top` most likely tokens, best first."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logprobs.topk(top)
    return TokenLogprob(
        token=tokenizer.decode([token]),
        token_id=token,
        logprob=float(logprobs[token]),
        top=[Alternative(tokenizer.decode([i]), v) for i, v in zip(ids.tolist(), values.tolist(), strict=True)],
    )
