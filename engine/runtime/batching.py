"""Continuous batching: what every batch does with its rows (`Batch`: join, deliver, leave), and a
causal model's batches (`CausalBatch`; an encoder-decoder's are in engine.runtime.seq2seq). Sequences
decode together, one forward per step for all of them, in a batch whose length bucket fits the
longest (engine.runtime.step; a request joins a batch of a longer bucket rather than start its own),
each row attending by its own choice (dense, a sliding window, Quest, block top-k, with its own
settings: engine.runtime.step.step_choice). Rows that pick keys by content (Quest, block top-k) need
a cache that keeps page bounds: they decode in batches of their own, the others together.

A request joins at the next step: its prompt is prefilled alone into a free row of the batch's
KV cache, its first token comes from that prefill, and from then on each step gives it one token.
While other requests decode, a prompt is prefilled in chunks (`join_step`), one between two steps,
into a cache of its own until its last, so their steps wait for a chunk, not for a whole prompt
(chunked prefill, as in Sarathi-Serve and vLLM; here the chunk is a forward of its own before the
step, not rows of the step's own forward).
A finished or cancelled request leaves at once; the last row moves into its place, so a step always
reads rows 0..n-1. Each request keeps its own sampling, seed, stops, limits and metrics (a
Decoding per row); the forward and the weights it reads are shared, which is the whole
point on hardware where reading the weights is what a decode step costs.

With speculation (engine.runtime.speculation), a step gives each row its last token and its guesses
in one forward; rows without guesses take part with their one token. A step with rows on sparse
attention checks no guesses (their keys follow rules a run of tokens would need its own of). Each row keeps what its own
picks confirm. A draft model guesses by stepping the batch's rows itself, on the batch's own cache,
before that forward. `auto` rows guess only when the step is expected to pay: the tokens their guesses
are likely to give (each row's share kept so far) against the measured cost of the wider step. What a
step guesses is decided in engine.runtime.speculation (`plan`).

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
from engine.platform.measure import PeakMemory, now
from engine.runtime.compile import CompiledStep
from engine.runtime.decoding import Decoding
from engine.runtime.kv_cache import RowCache, kv_bytes_per_position
from engine.runtime.prompt import Encoded
from engine.runtime.speculation import SHORTEST_MATCH, StepCosts, expected_tokens, lookup, plan
from engine.runtime.step import (
    BatchKey,
    bucket_for,
    decode_step,
    step_choice,
    step_key,
    verify_step,
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


class CausalBatch(Batch):
    """A causal model's sequences: one cache of `capacity` rows, one step."""

    def __init__(self, loaded: LoadedModel, key: BatchKey, capacity: int):
        super().__init__(loaded, key)
        self.cache = RowCache(loaded.model.config.num_hidden_layers, capacity, key[0], pages=key[1])
        self.staged: RowCache | None = None  # the first's chunks so far, when it is prefilled in chunks
        self.costs = StepCosts()  # what its steps took, by shape (auto speculation weighs them)

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def join_step(self, chunk: int) -> None:
        """Prefill what joins: the first waiting prompt's next `chunk` tokens, or with `chunk` 0 every
        waiting prompt whole. A prompt prefilled in chunks is in a cache of its own meanwhile (`staged`:
        the batch's steps write the rows past their own, where it would be), moved into the batch's
        with its last chunk. A prompt whose last token is in has its first token (or is done) and
        decodes with the others from the next step. Its prefill failing ends that request alone
        (`JoinError`: the caller says why)."""
        while self.joining:
            row = self.joining[0]
            ids = row.decoding.encoded.input_ids
            start, length = row.position, ids.shape[1]
            stop = length if not chunk else min(length, start + chunk)
            if start == 0:
                self.staged = self._staging() if stop < length else None
            cache = self.staged or self.cache
            cache.prefill(0 if self.staged else len(self.rows), start)
            options = row.decoding.request.options
            # its own block size, for the prefill
            choice = AttentionChoice(options.attention, options.sparse, row.stats)
            try:
                with torch.inference_mode():
                    out = self.loaded.model(
                        input_ids=ids[:, start:stop],
                        position_ids=torch.arange(start, stop, device=ids.device)[None],
                        past_key_values=cache,
                        use_cache=True,
                        logits_to_keep=1,
                        studio_choice=choice,
                    )
                row.position = stop
                if stop < length:
                    return
                if self.staged is not None:
                    self.cache.take_row(len(self.rows), self.staged, length)
                    self.staged = None
                self.joining.pop(0)
                row.density = row.stats.density
                self.rows.append(row)
                self._accept(row, out.logits[0, -1])
            except Exception as exc:
                self.staged = None
                if row in self.rows or row in self.joining:
                    self.remove(row)
                raise JoinError(row, exc) from exc
            if chunk:
                return

    def _staging(self) -> RowCache:
        """A cache of one row like the batch's, for a prompt prefilled in chunks."""
        config = self.loaded.model.config
        return RowCache(config.num_hidden_layers, 1, self.cache.length, pages=self.cache.keeps_pages)

    def step(self) -> None:
        """One decode step: a token for every row, or, where rows speculate, a checked run of them."""
        if (speculating := plan(self)) is not None:
            self._verify(*speculating)
            return
        rows = self.rows
        choice, which = self.attention()
        compiled = self.compiled_step(choice, len(rows), 1)
        with torch.inference_mode():  # inputs made inside too: a compiled step is traced on inference tensors
            tokens, positions = self.inputs([[r.decoding.token] for r in rows], compiled)
            indices = None if which is None else self.pad(torch.tensor(which, device=tokens.device), compiled)
            logits = self._timed(self.loaded, compiled, tokens, positions, choice, indices)
        stepped = list(rows)  # rows that finish leave the batch as the loop goes
        for i, row in enumerate(stepped):
            row.position += 1
            row.took_step(len(stepped), compiled.compile_s if compiled else None)
            self._accept(row, logits[i])

    def _verify(self, guesses: list[list[int]], width: int) -> None:
        """One forward over every row's last token and its guesses, padded to `width` by repeating the
        last token (keys past the row's end, never read); each row then picks from each position's
        logits in turn while its pick is the guess there."""
        rows = list(self.rows)
        compiled = self.compiled_step(DENSE, len(rows), width)  # speculation.plan: dense rows only
        with torch.inference_mode():
            last = [row.decoding.token for row in rows]
            padded = [[t, *g] + [t] * (width - 1 - len(g)) for t, g in zip(last, guesses, strict=True)]
            tokens, positions = self.inputs(padded, compiled)
            logits = self._timed(self.loaded, compiled, tokens, positions)
        for i, (row, guess) in enumerate(zip(rows, guesses, strict=True)):
            row.took_step(len(rows), compiled.compile_s if compiled else None)
            row.proposed += len(guess)
            kept = 0
            for j in range(len(guess) + 1):
                offered = guess[j] if j < len(guess) else None
                if not self._accept(row, logits[i, j], offered) or row.decoding.finish is not None:
                    break
                kept += 1
            row.position += 1 + kept  # its last token's key and the kept guesses'

    def compiled_step(self, choice: StepChoice, rows: int, width: int) -> CompiledStep | None:
        """The model's compiled step for `rows` rows of `width` tokens, if ready (engine.runtime.compile)."""
        return self.loaded.compiled.step((self.key[0], choice), rows, width) if self.loaded.compiled else None

    def inputs(self, tokens: list[list[int]], compiled: CompiledStep | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A step's tokens (rows, width) and positions ((rows,) for one token a row, else (rows, width)),
        the rows' own, then the compiled step's free rows, which ride along from position 0, output unread."""
        device, width = self.loaded.device, len(tokens[0])
        ids = self.pad(torch.tensor(tokens, device=device), compiled)
        starts = self.pad(torch.tensor([r.position for r in self.rows], device=device), compiled)
        return ids, starts if width == 1 else starts[:, None] + torch.arange(width, device=device)

    @staticmethod
    def pad(values: torch.Tensor, compiled: CompiledStep | None) -> torch.Tensor:
        """A step input's rows and, for a compiled step, zeros for its free rows."""
        free = compiled.rows - len(values) if compiled else 0
        return torch.cat([values, values.new_zeros((free, *values.shape[1:]))]) if free else values

    def forward(
        self,
        loaded: LoadedModel,
        compiled: CompiledStep | None,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        choice: StepChoice = DENSE,
        which: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of a step of `loaded` (the batch's model or a draft) on the batch's cache, its rows
        attending by `choice` (`which`: with RowChoices, each row's index into them)."""
        if compiled is not None:
            return compiled.run(tokens, positions, self.cache, which)
        self.cache.decode(positions, int(positions.max()) + 1)
        step = decode_step if positions.dim() == 1 else verify_step
        return step(loaded.model, tokens, positions, self.cache, choice, which=which)

    def _timed(self, loaded: LoadedModel, compiled: CompiledStep | None, *inputs) -> torch.Tensor:
        """forward(loaded, compiled, *inputs), its time kept as the running cost of its shape (auto
        speculation weighs it)."""
        start = now(loaded.device)
        logits = self.forward(loaded, compiled, *inputs)
        self.costs.record((len(self.rows), inputs[0].shape[1], compiled is not None), now(loaded.device) - start)
        return logits

    def remove(self, row: Row) -> None:
        if self.joining and row is self.joining[0]:
            self.staged = None  # it left part way in
        super().remove(row)

    def _move_row(self, source: int, target: int) -> None:
        self.cache.move_row(source, target)

    def memory_bytes(self) -> int:
        return self.cache.memory_bytes() + (self.staged.memory_bytes() if self.staged else 0)


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
