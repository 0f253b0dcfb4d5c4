"""A comparison's quality side: B scoring A's output teacher-forced (its quality cost), the
free-running agreement of the two answers, and both sides' distributions where they first part."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from engine.api.request import GenerationRequest
from engine.api.results import Divergence, Quality, Result
from engine.attention.choice import AttentionChoice
from engine.backends import Run
from engine.experiments.statistics import distribution_quality
from engine.models.loader import LoadedModel
from engine.runtime.decoding import encode_prompt
from engine.runtime.logprobs import token_logprob
from engine.runtime.scoring import teacher_forced_logprobs


@dataclass(frozen=True)
class Scorer:
    """One side as it scores A's output, teacher-forced: its model, its prompt ids and its attention."""

    loaded: LoadedModel
    prompt: torch.Tensor  # (1, n) ids
    choice: AttentionChoice

    @staticmethod
    def of(loaded: LoadedModel, request: GenerationRequest) -> Scorer:
        options = request.options
        ids = encode_prompt(loaded, request).input_ids
        return Scorer(loaded, ids, AttentionChoice(options.attention, options.sparse))

    @staticmethod
    def of_run(loaded: LoadedModel, run: Run) -> Scorer:
        """A side's scorer from the prompt tokenized for its run (once)."""
        encoded = run.prompt.for_model(loaded) if run.prompt is not None else None
        if encoded is None:
            return Scorer.of(loaded, run.request)
        options = run.request.options
        return Scorer(loaded, encoded.input_ids, AttentionChoice(options.attention, options.sparse))


def agreement(a: Result, b: Result, tokenizer) -> tuple[float, int | None]:
    """Free-running agreement: share of identical tokens, and where they first differ. A remote
    side's text (a server sends no token ids) is tokenized by the local side's `tokenizer`; two
    remote sides compare words."""
    if a.scores is not None:
        return float(a.text == b.text), None if a.text == b.text else 0

    def tokens(r: Result) -> list:
        if r.token_ids:
            return r.token_ids
        return tokenizer(r.text, add_special_tokens=False)["input_ids"] if tokenizer else r.text.split()

    x, y = tokens(a), tokens(b)
    first = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), None)
    if first is None and len(x) != len(y):
        first = min(len(x), len(y))
    longest = max(len(x), len(y))
    return (sum(p == q for p, q in zip(x, y, strict=False)) / longest if longest else 1.0), first


@dataclass(frozen=True)
class Scored:
    """What B scoring A's output gives: B's quality cost (None, and why, when it cannot be measured), and
    both sides' distributions where the two answers first part."""

    quality: Quality | None
    note: str = ""
    divergence: Divergence | None = None


def score_sides(a_side: Scorer, b_side: Scorer, a: Result, b: Result, first: int | None) -> Scored:
    """B's quality cost on A's output, and where the answers part (`first`: the first differing token)."""
    if a.scores is not None:  # classification: the two label distributions
        labels, b_scores = list(a.scores), b.scores or {}
        p = torch.tensor([[a.scores[k] for k in labels]]).clamp_min(1e-12).log()
        q = torch.tensor([[b_scores.get(k, 0.0) for k in labels]]).clamp_min(1e-12).log()
        tv = 0.5 * sum(abs(a.scores[k] - b_scores.get(k, 0.0)) for k in labels)
        return Scored(replace(distribution_quality(p, q, None), tokens=len(labels), tv_distance=tv))
    if not a.token_ids:
        return Scored(None, "A generated no tokens to score.")
    tokenizer_a, tokenizer_b = a_side.loaded.tokenizer, b_side.loaded.tokenizer
    same_tokenizer = tokenizer_a is tokenizer_b  # one model: no need to compare vocabularies
    if not same_tokenizer and tokenizer_a.get_vocab() != tokenizer_b.get_vocab():
        return Scored(None, "A and B use different tokenizers, so B cannot score A's tokens.")
    logp_a = teacher_forced_logprobs(a_side.loaded, a_side.prompt, a.token_ids, a_side.choice)
    logp_b = teacher_forced_logprobs(b_side.loaded, b_side.prompt, a.token_ids, b_side.choice)
    vocab = min(logp_a.shape[-1], logp_b.shape[-1])  # embedding tables may be padded differently
    logp_a, logp_b = logp_a[:, :vocab], logp_b[:, :vocab].to(logp_a.device)
    targets = torch.tensor(a.token_ids, device=logp_a.device)
    parted = None
    if first is not None and first < len(a.token_ids):  # where A ended first, no position of A's was scored
        parted = _divergence(tokenizer_a, first, logp_a[first], logp_b[first], a, b)
    return Scored(distribution_quality(logp_a, logp_b, targets), divergence=parted)


DIVERGENCE_TOP = 5  # alternatives shown on each side where the answers part


def _divergence(tokenizer, at: int, row_a: torch.Tensor, row_b: torch.Tensor, a: Result, b: Result) -> Divergence:
    """Each side's token at `at` and its distribution there. B's token: its own; where B ended there,
    its most likely one (comparisons decode greedily), which is the end of its answer."""
    previous = a.token_ids[at - 1] if at else None
    b_token = b.token_ids[at] if at < len(b.token_ids) else int(row_b.argmax())
    context = tokenizer.decode(a.token_ids[:at], skip_special_tokens=True)[-DIVERGENCE_CONTEXT:]
    return Divergence(
        at,
        context,
        token_logprob(tokenizer, row_a, a.token_ids[at], DIVERGENCE_TOP, previous),
        token_logprob(tokenizer, row_b, b_token, DIVERGENCE_TOP, previous),
    )


DIVERGENCE_CONTEXT = 120  # characters of the shared text shown before where the answers part
