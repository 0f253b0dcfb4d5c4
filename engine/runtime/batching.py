"""Continuous batching: what every batch does with its rows (`Batch`: join, deliver, leave; `Row`:
one request in it), and where a request goes. Sequences decode together, one forward per step for
all of them, in a batch whose length bucket fits the longest (engine.runtime.step; a request joins a
batch of a longer bucket rather than start its own), each row attending by its own choice (dense, a
sliding window, Quest, block top-k, with its own settings: engine.runtime.step.step_choice). Rows
that pick keys by content (Quest, block top-k) need a cache that keeps page bounds: they decode in
batches of their own, the others together. The kinds of batch run the forwards: a causal model's in
engine.runtime.causal, an encoder-decoder's in engine.runtime.seq2seq.

A request joins at the next step, and from then on each step gives it one token (or, speculating,
a checked run of them). A finished or cancelled request leaves at once; the last row moves into its
place, so a step always reads rows 0..n-1. Each request keeps its own sampling, seed, stops, limits
and metrics (a Decoding per row); the forward and the weights it reads are shared, which is the
whole point on hardware where reading the weights is what a decode step costs.

Only the engine thread calls into a batch (engine.runtime.runner).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from engine.api.request import GenerationRequest
from engine.attention.choice import DENSE, AttentionChoice, AttentionStats, StepChoice
from engine.attention.content import PAGE
from engine.models.loader import LoadedModel
from engine.platform.measure import PeakMemory
from engine.runtime.decoding import Decoding
from engine.runtime.kv_cache import kv_bytes_per_position
from engine.runtime.prompt import Encoded
from engine.runtime.speculation import SHORTEST_MATCH, expected_tokens, lookup
from engine.runtime.step import (
    BatchKey,
    bucket_for,
    step_choice,
    step_key,
)

Deliver = Callable[[object], None]  # hands a text delta, the Result or an exception to the request


class JoinError(Exception):
    """A prompt's prefill failed (`row`: its request, left out of the batch; `error`: why)."""

    def __init__(self, row: Row, error: Exception):
        super().__init__(str(error))
        self.row, self.error = row, error


def request_key(loaded: LoadedModel, request: GenerationRequest, encoded: Encoded) -> tuple[int, AttentionChoice]:
    """A request's length bucket and attention choice (as its step reads it). The bucket holds a
    causal row's prompt and new tokens, or the longer of an encoder-decoder row's input (its encoder
    output) and its decoder's tokens (start, branch start, new tokens), which are cached apart."""
    options = request.options
    choice = DENSE if options.attention == "dense" else AttentionChoice(options.attention, options.sparse)
    prompt = encoded.input_ids.shape[1]
    if loaded.spec.family == "causal":
        tokens = prompt + options.max_new_tokens
    else:
        tokens = max(prompt, 1 + len(request.answer_start) + options.max_new_tokens)
    return step_key(bucket_for(tokens), choice)


@dataclass(eq=False)  # a request's row: itself, not any row of equal fields
class Row:
    """One request decoding in a batch, and what its metrics need that only the batch sees."""

    decoding: Decoding
    deliver: Deliver
    cancelled: Callable[[], bool]  # the request stopped reading: leave at the next step
    memory: PeakMemory
    queue_s: float
    density: float = 1.0  # the prefill's
    choice: AttentionChoice = DENSE  # how its decode steps attend (request_key's)
    position: int = 0  # where its next key goes: the tokens in its row of the cache
    encoder_length: int = 0  # an encoder-decoder's row: its encoder output's positions (in the cross cache)
    rows_summed: int = 0  # over its decode steps: the batch size of each
    compiled_steps: int = 0
    eager_steps: int = 0
    compile_s: float | None = None
    proposed: int = 0  # speculated tokens checked, and kept
    accepted: int = 0
    draft: LoadedModel | None = None  # speculation draft: the model that guesses
    draft_s: float = 0.0  # time its draft steps took (the steps its row took part in)
    stats: AttentionStats = field(default_factory=AttentionStats)  # its prefill's, over its chunks

    def send_result(self) -> None:
        steps = self.compiled_steps + self.eager_steps
        path = "eager" if not self.compiled_steps else "compiled" if not self.eager_steps else "mixed"
        self.deliver(
            self.decoding.result(
                peak_mb=self.memory.peak_mb(),
                density=self.density,
                queue_s=self.queue_s,
                decode_path=path,
                compile_s=self.compile_s,
                batch_size=self.rows_summed / steps if steps else 1.0,
                proposed_tokens=self.proposed,
                accepted_tokens=self.accepted,
                decode_steps=steps,
                draft_ms=self.draft_s * 1000,
            )
        )

    def took_step(self, rows: int, compile_s: float | None) -> None:
        """It took part in a step of `rows` sequences, compiled (`compile_s`: that step's compile time) or eager."""
        self.rows_summed += rows
        if compile_s is None:
            self.eager_steps += 1
        else:
            self.compiled_steps += 1
            self.compile_s = compile_s

    @property
    def speculation(self) -> str:
        return self.decoding.request.options.speculation

    def room(self, width: int) -> int:
        """How many guesses a step of `width` can check for it: its lookahead, within its tokens left
        (less the one its check always gives)."""
        decoding = self.decoding
        left = decoding.request.options.max_new_tokens - len(decoding.new_ids) - 1
        return max(0, min(width - 1, decoding.request.options.lookahead, left))

    def looked_up(self, width: int) -> list[int]:
        """Its guesses by prompt lookup (prompt_lookup and auto rows; none where nothing recurs)."""
        options, count = self.decoding.request.options, self.room(width)
        if self.speculation not in ("prompt_lookup", "auto") or not count:
            return []
        return lookup(self.decoding.seen[0], options.lookup_ngram, count, min(SHORTEST_MATCH, options.lookup_ngram))

    def expected(self, guesses: int) -> float:
        """The tokens a check of `guesses` is expected to give it, from its share kept so far."""
        return expected_tokens(self.accepted, self.proposed, guesses)


class Batch(ABC):
    """The sequences of one loaded model and batch key that decode together: how rows join, get their
    tokens and leave. Its kind runs the forwards: CausalBatch here, engine.runtime.seq2seq.Seq2SeqBatch."""

    def __init__(self, loaded: LoadedModel, key: BatchKey):
        self.loaded, self.key = loaded, key
        self.rows: list[Row] = []
        # Requests waiting to join, in order; the first may be part way in (its prompt's tokens so far: `position`)
        self.joining: list[Row] = []

    @property
    @abstractmethod
    def capacity(self) -> int: ...

    def attention(self) -> tuple[StepChoice, list[int] | None]:
        """How this step's rows attend: one choice, or RowChoices with each row's index into them."""
        return step_choice([row.choice for row in self.rows])

    @abstractmethod
    def join_step(self, chunk: int) -> None:
        """Let what waits join: with `chunk` 0 every waiting request, else a part of the first's prompt
        (a kind without chunks takes every waiting request). A failing request ends alone (`JoinError`)."""

    @abstractmethod
    def step(self) -> None:
        """One decode step: a token (or, speculating, a checked run of them) for every row."""

    @abstractmethod
    def memory_bytes(self) -> int: ...

    @abstractmethod
    def _move_row(self, source: int, target: int) -> None:
        """The sequence in row `source` goes to row `target` of the batch's caches."""

    def add(self, row: Row) -> None:
        """A request to join: `join_step` lets it in."""
        row.memory.start()
        row.decoding.begin_prefill()
        self.joining.append(row)

    def _accept(self, row: Row, logits: torch.Tensor, guess: int | None = None) -> bool:
        """The row's next token from `logits`, delivered; whether it is the `guess` (counted before a
        finished row sends its Result)."""
        delta = row.decoding.accept(logits, guess)
        kept = guess is not None and row.decoding.picked == guess
        row.accepted += kept
        if delta:
            row.deliver(delta)
        if row.decoding.finish is not None:
            self.remove(row)
            row.send_result()
        return kept

    def remove(self, row: Row) -> None:
        """Take a row out (finished or cancelled); the last row moves into its place."""
        if row in self.joining:
            self.joining.remove(row)
            return
        index = self.rows.index(row)
        last = len(self.rows) - 1
        if index != last:
            self._move_row(last, index)
            self.rows[index] = self.rows[last]
        self.rows.pop()

    def fail(self, error: BaseException) -> None:
        """A step failed: every request in the batch gets the error."""
        for row in self.rows + self.joining:
            row.deliver(error)
        self.rows.clear()
        for row in list(self.joining):
            self.remove(row)


class ModelBatches:
    """The batches of one loaded causal model decoding now, by key (the runner makes them)."""

    def __init__(self, capacity: int):
        self.capacity = capacity  # rows per batch
        self.by_key: dict[BatchKey, Batch] = {}

    def room(self, key: BatchKey) -> int:
        """Rows a request for `key` can take in the batch that exists for it."""
        batch = self.by_key[key]
        return self.capacity - len(batch.rows) - len(batch.joining)

    def memory_bytes(self) -> int:
        return sum(batch.memory_bytes() for batch in list(self.by_key.values()))


def planned_bytes(loaded: LoadedModel, key: BatchKey, capacity: int) -> int:
    """What a new batch's cache will take, from the model's config (before it exists): keys and values,
    plus two bounds per page of keys when it keeps them."""
    bucket, pages = key
    positions = bucket + (-(-bucket // PAGE) if pages else 0)
    caches = 1 if loaded.spec.family == "causal" else 2  # an encoder-decoder's decoder: its own and cross keys
    return caches * capacity * positions * kv_bytes_per_position(loaded.model.config, loaded.model.dtype)
