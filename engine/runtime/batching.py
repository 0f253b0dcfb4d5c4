"""Continuous batching of a causal model's requests: sequences that share an attention choice decode
together, one forward per step for all of them, in a batch whose length bucket fits the longest
(engine.runtime.step.step_key; a request joins a batch of a longer bucket rather than start its own).

A request joins at the next step: its prompt is prefilled alone into a free row of the batch's
KV cache, its first token comes from that prefill, and from then on each step gives it one token.
A finished or cancelled request leaves at once; the last row moves into its place, so a step always
reads rows 0..n-1. Each request keeps its own sampling, seed, stops, limits and metrics (a
Decoding per row); the forward and the weights it reads are shared, which is the whole
point on hardware where reading the weights is what a decode step costs.

Only the engine thread calls into a batch (engine.runtime.runner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.api.request import GenerationRequest
from engine.attention.choice import DENSE, AttentionChoice, AttentionStats
from engine.attention.content import PAGE
from engine.models.loader import LoadedModel
from engine.platform.measure import PeakMemory
from engine.runtime.decoding import Decoding
from engine.runtime.kv_cache import RowCache
from engine.runtime.prompt import Encoded
from engine.runtime.step import BatchKey, bucket_for, decode_step, keeps_pages, step_key

Deliver = Callable[[object], None]  # hands a text delta, the Result or an exception to the request


def batch_key(loaded: LoadedModel, request: GenerationRequest, encoded: Encoded) -> BatchKey:
    """Which batch a request decodes in: its length bucket (prompt + new tokens) and attention choice."""
    options = request.options
    choice = DENSE if options.attention == "dense" else AttentionChoice(options.attention, options.sparse)
    return step_key(bucket_for(encoded.input_ids.shape[1] + options.max_new_tokens), choice)


@dataclass
class Row:
    """One request decoding in a batch, and what its metrics need that only the batch sees."""

    decoding: Decoding
    deliver: Deliver
    cancelled: Callable[[], bool]  # the request stopped reading: leave at the next step
    memory: PeakMemory
    queue_s: float
    density: float = 1.0  # the prefill's
    position: int = 0  # where its next key goes: the tokens in its row of the cache
    rows_summed: int = 0  # over its decode steps: the batch size of each
    compiled_steps: int = 0
    eager_steps: int = 0
    compile_s: float | None = None

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
            )
        )


class Batch:
    """The sequences of one loaded model and batch key: one cache of `capacity` rows, one step."""

    def __init__(self, loaded: LoadedModel, key: BatchKey, capacity: int):
        self.loaded, self.key = loaded, key
        self.cache = RowCache(loaded.model.config.num_hidden_layers, capacity, key[0], pages=keeps_pages(key[1]))
        self.rows: list[Row] = []

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def add(self, row: Row) -> None:
        """Prefill the row's prompt into the next free row; it then has its first token (or is done)."""
        index, decoding = len(self.rows), row.decoding
        options = decoding.request.options
        ids = decoding.encoded.input_ids
        stats = AttentionStats()
        choice = AttentionChoice(options.attention, options.sparse, stats)  # its own block size, for the prefill
        row.memory.start()
        decoding.begin_prefill()
        self.cache.prefill(index)
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        with torch.inference_mode():
            out = self.loaded.model(
                input_ids=ids,
                position_ids=positions,
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=1,
                studio_choice=choice,
            )
        row.density, row.position = stats.density, ids.shape[1]
        self.rows.append(row)
        self._accept(row, out.logits[0, -1])

    def step(self) -> None:
        """One decode step: a token for every row."""
        rows = self.rows
        device = self.loaded.device
        compiled = self.loaded.compiled.step(self.key, len(rows)) if self.loaded.compiled else None
        free = compiled.rows - len(rows) if compiled else 0  # free rows ride along at position 0, output unread
        with torch.inference_mode():  # inputs made inside too: a compiled step is traced on inference tensors
            tokens = torch.tensor([[r.decoding.token] for r in rows] + [[0]] * free, device=device)
            positions = torch.tensor([r.position for r in rows] + [0] * free, device=device)
            if compiled is not None:
                logits = compiled.run(tokens, positions, self.cache)
            else:
                self.cache.decode(positions, int(positions.max()) + 1)
                logits = decode_step(self.loaded.model, tokens, positions, self.cache, self.key[1])
        stepped = list(rows)  # rows that finish leave the batch as the loop goes
        for i, row in enumerate(stepped):
            row.position += 1
            row.rows_summed += len(stepped)
            if compiled is not None:
                row.compiled_steps += 1
                row.compile_s = compiled.compile_s
            else:
                row.eager_steps += 1
            self._accept(row, logits[i])

    def _accept(self, row: Row, logits: torch.Tensor) -> None:
        if delta := row.decoding.accept(logits):
            row.deliver(delta)
        if row.decoding.finish is not None:
            self.remove(row)
            row.send_result()

    def remove(self, row: Row) -> None:
        """Take a row out (finished or cancelled); the last row moves into its place."""
        index = self.rows.index(row)
        last = len(self.rows) - 1
        if index != last:
            self.cache.move_row(last, index)
            self.rows[index] = self.rows[last]
        self.rows.pop()

    def fail(self, error: BaseException) -> None:
        """A step failed: every request in the batch gets the error."""
        for row in self.rows:
            row.deliver(error)
        self.rows.clear()

    def memory_bytes(self) -> int:
        return self.cache.memory_bytes()


class ModelBatches:
    """The batches of one loaded causal model decoding now, by key (the runner makes them)."""

    def __init__(self, capacity: int):
        self.capacity = capacity  # rows per batch
        self.by_key: dict[BatchKey, Batch] = {}

    def room(self, key: BatchKey) -> int:
        """Rows a request for `key` can take in the batch that exists for it."""
        batch = self.by_key[key]
        return self.capacity - len(batch.rows)

    def memory_bytes(self) -> int:
        return sum(batch.memory_bytes() for batch in list(self.by_key.values()))


def planned_bytes(loaded: LoadedModel, key: BatchKey, capacity: int) -> int:
    """What a new batch's cache will take, from the model's config (before it exists): keys and values,
    plus two bounds per page of keys when it keeps them."""
    bucket = key[0]
    config = loaded.model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_value = loaded.model.dtype.itemsize
    positions = bucket + (-(-bucket // PAGE) if keeps_pages(key[1]) else 0)
    return 2 * config.num_hidden_layers * capacity * heads * positions * head_dim * per_value
