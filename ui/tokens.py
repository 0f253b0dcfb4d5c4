"""The token view: each generated token coloured by its probability under the model, its position's
most likely alternatives shown when the pointer rests on it (a request's `logprobs`)."""

from __future__ import annotations

import html
import math

from engine.api.results import TokenLogprob


def _shown(text: str) -> str:
    """A token's text as the page shows it: whitespace made visible, markup escaped."""
    return html.escape(text.replace("\n", "↵").replace("\t", "⇥")) or "∅"


def _percent(logprob: float) -> str:
    return f"{100 * math.exp(logprob):.1f}%"


def token_view(tokens: list[TokenLogprob]) -> str:
    """HTML: a span per token, its background from red (unlikely) to green (likely), holding a hidden
    list of the alternatives (assets/style.css shows it on hover)."""
    spans = []
    for token in tokens:
        probability = math.exp(token.logprob)
        rows = "".join(
            f'<span class="alt{" chosen" if alt.token == token.token else ""}">'
            f"<code>{_shown(alt.token)}</code> {_percent(alt.logprob)}</span>"
            for alt in token.top
        )
        spans.append(
            f'<span class="tok" style="background: hsl({120 * probability:.0f} 70% 82%)" '
            f'data-p="{probability:.4f}">{html.escape(token.token)}'
            f'<span class="alts"><span class="alt-head">{_percent(token.logprob)} chosen</span>{rows}</span></span>'
        )
    legend = '<div class="tok-legend">token probability: <span>low</span> → <span>high</span>; rest the pointer on a token for its alternatives</div>'
    return f'<div class="tokens">{"".join(spans)}</div>{legend}'
