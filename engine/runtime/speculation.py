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
                   (engine.runtime.causal)
    auto           prompt_lookup, in the steps where it is expected to pay (engine.runtime.causal:
                   `expected_tokens` against the measured cost of the wider step)

A checking step is not free on a 2-core CPU: its matmuls are compute-bound from a few rows on (the
embedded model's compiled fp32 step: 2 tokens ~1.5x one token's time, 8 tokens ~1.9-2.7x, measured),
so a guess must be likely to pay: no guess from a single recurring token (on a summary, 3% of such
guesses were kept). Past a handful of tokens, though, a wider check costs little more, so the default
lookahead is 7 (a check of 8): against 3 it took a draft on a chat answer from 1.19x to 1.40x and
prompt lookup on a code edit from 1.71x to 2.03x (a 2-core Xeon, one run each, same outputs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from engine.attention.choice import DENSE
from engine.models.loader import LoadedModel
from engine.platform.measure import now
from engine.runtime.step import step_width

if TYPE_CHECKING:
    from engine.runtime.causal import CausalBatch

SHORTEST_MATCH = 2  # tokens of the row's end that must recur before their follow-up is guessed
# auto: a row's share of guesses kept starts as if PRIOR_KEPT of PRIOR_PROPOSED had been (optimistic
# enough that a first check of three guesses is tried, and a few misses stop it)
PRIOR_KEPT, PRIOR_PROPOSED = 2, 3
# A speculating step computes rows x width tokens; past about this many the matmuls stop being bound
# by reading the weights (a 2-core CPU: ~8 rows, README), and guesses would cost more than they save.
STEP_TOKENS = 16
# What a step of width w costs against a plain one, until a batch has timed its own: the embedded
# model's fp32 step, one row, on a 2-core EPYC (83, 124, 192 and 223 ms for 1, 2, 4 and 8 tokens).
WIDTH_COST = {1: 1.0, 2: 1.5, 4: 2.3, 8: 2.7, 16: 4.0}
TIMED = 0.2  # the weight of each new timing in a step's running cost


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


def expected_tokens(accepted: int, proposed: int, guesses: int) -> float:
    """The tokens a check of `guesses` is expected to give a row that has had `accepted` of `proposed`
    guesses kept: each guess is kept with that share (from the prior at first) while the ones before
    it were, and the check always gives one token of its own: 1 + a + a^2 + ... + a^guesses."""
    kept = (accepted + PRIOR_KEPT) / (proposed + PRIOR_PROPOSED)
    return sum(kept**i for i in range(guesses + 1))


Shape = tuple[int, int, bool]  # a step's (rows, width, compiled)


class StepCosts:
    """What a batch's steps take, by shape: a running mean of their seconds (TIMED per new timing)."""

    def __init__(self) -> None:
        self.seconds: dict[Shape, float] = {}

    def record(self, shape: Shape, took: float) -> None:
        last = self.seconds.get(shape)
        self.seconds[shape] = took if last is None else (1 - TIMED) * last + TIMED * took

    def ratio(self, rows: int, width: int, compiled: bool) -> float:
        """A step of `width` tokens a row against a plain one: as timed, else WIDTH_COST."""
        wide, plain = self.seconds.get((rows, width, compiled)), self.seconds.get((rows, 1, compiled))
        if wide is None or plain is None:
            return WIDTH_COST[width]
        return wide / plain


def plan(batch: CausalBatch) -> tuple[list[list[int]], int] | None:
    """Each row's guesses and the step's width: its last token and the longest run of guesses,
    rounded up to a power of two (a compiled step per width), within the step's token budget and
    every row's cache; None: a plain step (no row guesses, or a row on sparse attention, whose keys
    are picked by rules a run of tokens would need its own of)."""
    rows = batch.rows
    budget = STEP_TOKENS // len(rows)
    reach = max((row.decoding.request.options.lookahead for row in rows if row.speculation != "none"), default=0)
    if any(row.choice.mode != "dense" for row in rows) or budget < 2 or not reach:
        return None
    width = min(step_width(1 + reach), 1 << (budget.bit_length() - 1))
    if any(row.position + width > batch.cache.length for row in rows):
        return None
    guesses = [row.looked_up(width) for row in rows]
    # a step widened anyway (rows that asked for guesses) checks auto rows' guesses for free
    asked = any(row.draft is not None for row in rows) or any(
        g for row, g in zip(rows, guesses, strict=True) if row.speculation == "prompt_lookup"
    )
    if not asked and any(guesses):  # only auto rows guessed: as many as pay best, or none
        count = _paying_guesses(batch, guesses)
        guesses = [g[:count] for g in guesses]
    for draft in {id(row.draft): row.draft for row in rows if row.draft is not None}.values():
        drafted = _drafted(batch, draft, width)
        for i, row in enumerate(rows):
            if row.draft is draft:
                guesses[i] = drafted[i]
    if not any(guesses):
        return None
    return guesses, min(width, step_width(1 + max(len(g) for g in guesses)))


def _paying_guesses(batch: CausalBatch, guesses: list[list[int]]) -> int:
    """How many of each row's guesses to check (0: none): the step width, of those up to the guesses'
    longest, whose tokens expected a second beat a plain step's by the most. Expected: each row's
    tokens for its guesses (one without) against that width's cost, as the batch timed it; so rows
    whose guesses are often refused check fewer, and a long lookahead costs nothing where it would
    not pay."""
    rows = batch.rows
    best, best_rate = 0, float(len(rows))  # a plain step: a token a row for a cost of 1
    width = 2
    while width <= step_width(1 + max(len(g) for g in guesses)):
        ratio = batch.costs.ratio(len(rows), width, batch.compiled_step(DENSE, len(rows), width) is not None)
        rate = sum(row.expected(min(len(g), width - 1)) for row, g in zip(rows, guesses, strict=True)) / ratio
        if rate > best_rate:
            best, best_rate = width - 1, rate
        width *= 2
    return best


def _drafted(batch: CausalBatch, draft: LoadedModel, width: int) -> list[list[int]]:
    """Guesses by the draft model for every row (those without a draft ignore theirs): its greedy
    tokens, one step of all rows at a time, as many steps as the rows it drafts for have room.
    It reads the batch's cache, where every accepted token's keys are the model's own, and writes
    its guesses' keys past each row's position, where the checking step writes the model's."""
    rows = batch.rows
    steps = max(row.room(width) for row in rows if row.draft is draft)
    compiled = draft.compiled.step((batch.key[0], DENSE), len(rows)) if draft.compiled else None  # plan: dense rows
    start = now(draft.device)
    drafted: list[torch.Tensor] = []
    with torch.inference_mode():
        tokens, positions = batch.inputs([[r.decoding.token] for r in rows], compiled)
        for _ in range(steps):
            tokens = batch.forward(draft, compiled, tokens, positions).argmax(-1, keepdim=True)
            drafted.append(tokens[: len(rows), 0])
            positions = positions + 1
    took = now(draft.device) - start
    guessed = torch.stack(drafted, 1).tolist() if drafted else [[] for _ in rows]
    for row, ids in zip(rows, guessed, strict=True):
        if row.draft is draft:
            row.draft_s += took
            del ids[row.room(width) :]
            stop = next((i for i, t in enumerate(ids) if t in row.decoding.stop_ids), None)
            if stop is not None:  # nothing is guessed past a stop
                del ids[stop + 1 :]
    return guessed
