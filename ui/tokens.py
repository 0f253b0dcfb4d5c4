"""The token view: each generated token coloured by its probability under the model, its position's
most likely alternatives shown when the pointer rests on it (a request's `logprobs`)."""

from __future__ import annotations

import html
import math

from engine.api.results import Alternative, TokenLogprob


def _shown(text: str) -> str:
    """A token's text as the page shows it: whitespace made visible, markup escaped."""
    return html.escape(text.replace("\n", "↵").replace("\t", "⇥")) or "∅"


def _percent(logprob: float) -> str:
    return f"{100 * math.exp(logprob):.1f}%"


def _same(alternative: Alternative, token: TokenLogprob) -> bool:
    """Whether the alternative is the chosen token: by id where known (two tokens can read the same)."""
    if alternative.token_id is not None and token.token_id is not None:
        return alternative.token_id == token.token_id
    return alternative.token == token.token


def token_view(tokens: list[TokenLogprob]) -> str:
    """HTML: a span per token, its background from red (unlikely) to green (likely), holding a hidden
    list of the alternatives (assets/style.css shows it on hover)."""
    spans = []
    for token in tokens:
        probability = math.exp(token.logprob)
        rows = "".join(
            f'<span class="alt{" chosen" if _same(alt, token) else ""}">'
            f"<code>{_shown(alt.token)}</code> {_percent(alt.logprob)}</span>"
            for alt in token.top
        )
        spans.append(
            f'<span class="tok" style="background: hsl({120 * probability:.0f} 70% 82%)">'
            f"{html.escape(token.token) or '∅'}"
            f'<span class="alts"><span class="alt-head">{_percent(token.logprob)} chosen</span>{rows}</span></span>'
        )
    legend = '<div class="tok-legend">token probability: <span>low</span> → <span>high</span>; rest the pointer on a token for its alternatives</div>'
    return f'<div class="tokens">{"".join(spans)}</div>{legend}'
