"""The token view: each generated token coloured by its probability under the model, its position's
most likely alternatives shown when the pointer rests on it (a request's `logprobs`); clicking an
alternative continues the answer from it (ui.branches)."""

from __future__ import annotations

import html
import math

from engine.api.results import Alternative, Branch, Divergence, TokenLogprob

# The click on an alternative becomes the component's click event with its position and token id
# (listened for on the view's root: the spans are redrawn with every answer).
ON_CLICK = """
element.addEventListener('click', (event) => {
  const alternative = event.target.closest('.alt[data-token]');
  if (alternative) trigger('click', {at: Number(alternative.dataset.at), token: Number(alternative.dataset.token)});
});
"""


def _shown(text: str) -> str:
    """A token's text as a list shows it: whitespace made visible (" le" and "le" are two tokens), markup
    escaped."""
    return html.escape(text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")) or "∅"


def _percent(logprob: float) -> str:
    return f"{100 * math.exp(logprob):.1f}%"


def _same(alternative: Alternative, token: TokenLogprob) -> bool:
    """Whether the alternative is the chosen token: by id where known (two tokens can read the same)."""
    if alternative.token_id is not None and token.token_id is not None:
        return alternative.token_id == token.token_id
    return alternative.token == token.token


def _alternative(at: int, alternative: Alternative, token: TokenLogprob) -> str:
    """A row of a token's list; one the engine can continue from (a local model's: an id) is a button."""
    chosen = _same(alternative, token)
    branch = "" if chosen or alternative.token_id is None else f' data-at="{at}" data-token="{alternative.token_id}"'
    return (
        f'<span class="alt{" chosen" if chosen else ""}"{branch}>'
        f"<code>{_shown(alternative.token)}</code> {_percent(alternative.logprob)}</span>"
    )


def _place(at: int, branch: Branch | None) -> str:
    """A token's place in a branch: before its start (from the answer it left), or the start."""
    if branch is None or at > branch.at:
        return ""
    return " kept" if at < branch.at else " branched"


def token_view(tokens: list[TokenLogprob], sampling: str, branch: Branch | None = None) -> str:
    """HTML: a span per token, its background from red (unlikely) to green (likely), holding a hidden
    list of the alternatives (assets/style.css shows it on hover); then how tokens were picked."""
    spans = []
    for at, token in enumerate(tokens):
        rows = "".join(_alternative(at, alternative, token) for alternative in token.top)
        spans.append(
            f'<span class="tok{_place(at, branch)}" style="background: hsl({120 * math.exp(token.logprob):.0f} 70% 82%)">'
            f"{html.escape(token.token) or '∅'}"
            f'<span class="alts"><span class="alt-head">{_percent(token.logprob)} chosen</span>{rows}</span></span>'
        )
    clickable = any(a.token_id is not None for t in tokens for a in t.top)
    legend = (
        "token probability: <span>low</span> → <span>high</span> (before sampling reshapes it); rest the pointer "
        f"on a token for its alternatives{', click one to continue the answer from it' if clickable else ''} · "
        f"picked: {html.escape(sampling)}"
    )
    return f'<div class="tokens">{"".join(spans)}</div><div class="tok-legend">{legend}</div>'


def _distribution(label: str, token: TokenLogprob) -> str:
    """One side's token where the answers part, and its position's alternatives as bars."""
    rows = "".join(
        f'<tr class="{"chosen" if _same(alt, token) else ""}"><td><code>{_shown(alt.token)}</code></td>'
        f'<td class="bar"><span style="width: {100 * math.exp(alt.logprob):.1f}%"></span></td>'
        f"<td>{_percent(alt.logprob)}</td></tr>"
        for alt in token.top
    )
    head = f"{html.escape(label)} took <code>{_shown(token.token)}</code> ({_percent(token.logprob)})"
    return f'<div class="side"><div class="side-head">{head}</div><table>{rows}</table></div>'


def divergence_view(parted: Divergence, a_label: str, b_label: str) -> str:
    """Where a comparison's answers part: the text they share up to there, then each side's token
    highlighted with its distribution, side by side."""
    shared = html.escape(parted.context)
    return (
        f'<div class="divergence"><div class="parted-at">First divergence at token {parted.at + 1}: '
        f'…{shared}<mark class="a">{_shown(parted.a.token)}</mark> / <mark class="b">{_shown(parted.b.token)}</mark>'
        f'</div><div class="sides">{_distribution("A: " + a_label, parted.a)}{_distribution("B: " + b_label, parted.b)}'
        "</div></div>"
    )
