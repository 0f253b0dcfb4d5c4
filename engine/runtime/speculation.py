"""Speculative decoding: guessed tokens checked in one forward, so that a step can give a row several
tokens for about the price of one (a decode step reads every weight once, however many tokens it
computes, until the matmuls become compute-bound).

A row's proposal is its last token followed by up to `lookahead` guesses. The batch runs them in one
forward (engine.runtime.step.verify_step); the row then picks its next token from each position's
logits in turn, exactly as it would have one step at a time, and keeps going while the pick equals
the guess at that place: every accepted guess saves a step, the first miss ends the row's turn with
the token it picked instead. Greedy output is therefore token for token that of plain decoding;
sampled output follows the standard rejection rule (engine.runtime.sampling.TokenPicker), so its
distribution is unchanged. Keys written for guesses that were not kept stay past the row's position,
where no step reads them, until the row's later tokens overwrite them: nothing to roll back.

Guessers (RunOptions.speculation):
    prompt_lookup  the tokens that followed the latest earlier occurrence of the row's last n tokens
                   (n from lookup_ngram down to SHORTEST_MATCH), in its prompt or its answer so far
                   (prompt lookup decoding; vLLM's `ngram` method)
    draft          the same model at a cheaper precision (draft_precision), greedy, a step at a time;
                   it reads the batch's own KV cache, so it needs no cache of its own to keep in step
                   (engine.runtime.batching)
    auto           prompt_lookup, in the steps where it is expected to pay (engine.runtime.batching:
                   `expected_tokens` against the measured cost of the wider step)

A checking step is not free on a 2-core CPU: its matmuls are compute-bound from a few rows on (the
embedded model's compiled fp32 step: 2 tokens ~1.5x one token's time, 8 tokens ~2.7x, measured), so
a guess must be likely to pay: no guess from a single recurring token (on a summary, 3% of such
guesses were kept), and a short default lookahead.
"""

from __future__ import annotations

import torch

from engine.api.options import RunOptions

SHORTEST_MATCH = 2  # tokens of the row's end that must recur before their follow-up is guessed
# auto: a row's share of guesses kept starts as if PRIOR_KEPT of PRIOR_PROPOSED had been (optimistic
# enough that a first check of three guesses is tried, and a few misses stop it)
PRIOR_KEPT, PRIOR_PROPOSED = 2, 3


def lookup(ids: torch.Tensor, ngram: int, count: int, shortest: int = 1) -> list[int]:
    """Up to `count` tokens that followed the latest earlier occurrence of the last n tokens of `ids`
    (1-D), trying n = ngram, ngram - 1, ..., shortest; [] when none of them occurred before."""
    length = ids.shape[0]
    for n in range(min(ngram, length - 1), shortest - 1, -1):
        # windows starting before the last n tokens' own start, so at least one token follows each
        windows = ids[: length - 1].unfold(0, n, 1)  # (length - n, n): window i is ids[i : i + n]
        found = (windows == ids[length - n :]).all(dim=1).nonzero()
        if found.numel():
            start = int(found[-1]) + n
            return ids[start : start + count].tolist()
    return []


def proposal(options: RunOptions, seen: torch.Tensor, count: int) -> list[int]:
    """Up to `count` guesses by prompt lookup for a row whose tokens so far are `seen` (1, n)."""
    if count <= 0:
        return []
    return lookup(seen[0], options.lookup_ngram, count, min(SHORTEST_MATCH, options.lookup_ngram))


def expected_tokens(accepted: int, proposed: int, guesses: int) -> float:
    """The tokens a check of `guesses` is expected to give a row that has had `accepted` of `proposed`
    guesses kept: each guess is kept with that share (from the prior at first) while the ones before
    it were, and the check always gives one token of its own: 1 + a + a^2 + ... + a^guesses."""
    kept = (accepted + PRIOR_KEPT) / (proposed + PRIOR_PROPOSED)
    return sum(kept**i for i in range(guesses + 1))
