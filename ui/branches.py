"""Branches: clicking an alternative in a token view continues that answer from it, as if the model
had picked it (engine: GenerationRequest.answer_start), with the inputs the answer was asked with; the
answer it branched from stays on the page beside the branch."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine import InputError, Result, from_payload, to_payload
from engine.api.results import Branch, TokenLogprob

from .results import is_result


@dataclass(frozen=True)
class BranchPoint:
    start: tuple[int, ...]  # the branch's answer_start: the tokens before the click, then the one clicked
    kept: list[TokenLogprob]  # those tokens as the token view shows them, the clicked one with its position's
    branch: Branch


def branch_point(metrics: dict | None, clicked: Mapping[str, Any]) -> BranchPoint:
    """Where the answer in `metrics` (the panel's payload) branches: at token `clicked["at"]`, to the
    alternative whose id is `clicked["token"]`."""
    final = from_payload(metrics) if metrics and is_result(metrics) else None
    tokens = final.logprobs if isinstance(final, Result) else None
    if not tokens:
        raise InputError("This answer has no token view to branch from: run it with Logprobs above 0.")
    at, token = int(clicked.get("at", -1)), int(clicked.get("token", -1))
    if not 0 <= at < len(tokens):
        raise InputError("That token is not in the answer shown: run the request again.")
    if any(t.token_id is None for t in tokens[: at + 1]):
        raise InputError("A remote server's tokens come as text, not ids: branch from a local model's answer.")
    alternative = next((a for a in tokens[at].top if a.token_id == token), None)
    if alternative is None:
        raise InputError("That alternative is not among the token's shown: run the request again.")
    taken = TokenLogprob(alternative.token, token, alternative.logprob, tokens[at].top)
    start = (*(t.token_id for t in tokens[:at] if t.token_id is not None), token)
    # The answer's text as its tokens join (a stop string cut from the end shows here)
    original = "".join(t.token for t in tokens)
    return BranchPoint(start, [*tokens[:at], taken], Branch(at, tokens[at].token, alternative.token, original))


def branched(outputs: Iterator[tuple], point: BranchPoint) -> Iterator[tuple]:
    """A task endpoint's outputs (rendered output, metrics JSON) for the branch's request: its final
    metrics cover the whole answer's tokens (those before the branch from the answer it left) and say
    where it branched."""
    for *shown, metrics in outputs:
        if metrics and is_result(metrics):
            final = from_payload(metrics)
            assert isinstance(final, Result)  # a branch is one run (engine.api.validation)
            metrics = to_payload(replace(final, logprobs=[*point.kept, *(final.logprobs or [])], branch=point.branch))
        yield *shown, metrics
