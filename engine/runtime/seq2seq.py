"""Continuous batching of an encoder-decoder model's requests (Marian, BART, T5): one decoder forward
per step for every row, each row with its own encoder output's keys (a row of the cross-attention
cache, engine.runtime.kv_cache.CrossCache), its own keys so far and its own position.

A request joins at the next step: its encoder runs, then its decoder's first forward (the start token
and a branch's start tokens) writes its cross-attention keys into its row and gives its first token;
from then on each step gives it one token, and it leaves when it finishes, as a causal row does
(engine.runtime.batching). While others decode, requests join one per step.

transformers gives a decoder step one position for all its rows (the cache's length). A decoder that
adds its positions from a table (Marian's sinusoids, BART's learned ones) gets each row's own through
`RowPositions`; one that computes them inside attention (T5's relative buckets) cannot, so its
batches hold one row each (`decoder_rows`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from engine.attention.choice import AttentionChoice
from engine.models.loader import LoadedModel
from engine.platform.errors import InputError
from engine.runtime.batching import Batch, JoinError, Row
from engine.runtime.kv_cache import CrossCache, RowCache, decoder_layers
from engine.runtime.step import BatchKey


class RowPositions(nn.Module):
    """A decoder's position table that gives each row of a step its own position (`positions`, set
    by the batch for its step; None: the positions transformers passes, as for a single sequence)."""

    def __init__(self, table: nn.Module):
        super().__init__()
        self.table = table
        self.positions: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        if self.positions is None:
            return self.table(*args, **kwargs)
        shape_or_ids, cache_length = args[0], args[1] if len(args) > 1 else kwargs.get("cache_length", 0)
        # (rows, 1, d): BART's table adds a leading axis to the ids it is given, Marian's does not
        return self.table(shape_or_ids, cache_length, position_ids=self.positions).reshape(*self.positions.shape, -1)


def decoder_rows(model: Any, capacity: int) -> int:
    """The rows an encoder-decoder model's batches hold: `capacity` where its decoder's positions come
    from a table called as Marian's and BART's are, (ids or their shape, cache length, position_ids=)
    (wrapped in RowPositions here, once), else 1: one row's position is the cache's length, right
    for any decoder (T5's relative buckets, M2M100's and LED's tables, called otherwise)."""
    decoder = model.get_decoder()
    table = getattr(decoder, "embed_positions", None)
    if isinstance(table, RowPositions):
        return capacity
    if table is None or list(inspect.signature(table.forward).parameters)[1:3] != ["cache_length", "position_ids"]:
        return 1
    decoder.embed_positions = RowPositions(table)
    return capacity


class Seq2SeqBatch(Batch):
    """An encoder-decoder model's sequences: a decoder cache and a cross-attention cache of `capacity`
    rows, one decoder step."""

    def __init__(self, loaded: LoadedModel, key: BatchKey, capacity: int):
        super().__init__(loaded, key)
        self.layers = decoder_layers(loaded.model.config)
        # key[0] holds a row's encoder output and, apart, its decoder's tokens (engine.runtime.batching.request_key)
        self.cache = RowCache(self.layers, capacity, key[0], pages=key[1])
        self.cross = CrossCache(self.layers, capacity, key[0])
        self.caches = EncoderDecoderCache(self.cache, self.cross)
        positions = loaded.model.get_decoder().embed_positions if capacity > 1 else None
        assert positions is None or isinstance(positions, RowPositions), "rows need their own positions: decoder_rows"
        self.positions: RowPositions | None = positions

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def join_step(self, chunk: int) -> None:
        """Every waiting request joins (`chunk` 0), or the first one: its encoder and first decoder forward."""
        while self.joining:
            row = self.joining.pop(0)
            try:
                self._join(row)
            except Exception as exc:
                if row in self.rows:
                    self.remove(row)
                raise JoinError(row, exc) from exc
            if chunk:
                return

    def _join(self, row: Row) -> None:
        loaded, request = self.loaded, row.decoding.request
        ids = row.decoding.encoded.input_ids
        options = request.options
        choice = AttentionChoice(options.attention, options.sparse, row.stats)
        start = torch.tensor([[loaded.decoder_start, *request.answer_start]], device=loaded.device)
        # A row past its table's end would fail the step of every row: it is refused alone, here
        limit = getattr(loaded.model.config, "max_position_embeddings", None) if self.positions else None
        if limit is not None and start.shape[1] + options.max_new_tokens > limit:
            raise InputError(
                f"{loaded.spec.name}'s decoder has {limit} positions: ask for at most "
                f"{limit - start.shape[1]} new tokens."
            )
        index = len(self.rows)
        self.cache.prefill(index)
        self.cross.prefill(index)
        self.caches.is_updated = dict.fromkeys(range(self.layers), False)  # its cross keys are computed
        with torch.inference_mode():
            encoder_out = loaded.model.get_encoder()(input_ids=ids, studio_choice=choice)
            out = loaded.model(
                decoder_input_ids=start,
                encoder_outputs=encoder_out,
                past_key_values=self.caches,
                use_cache=True,
                studio_choice=choice,
            )
        row.position, row.encoder_length = start.shape[1], ids.shape[1]
        row.density = row.stats.density
        self.rows.append(row)
        self._accept(row, out.logits[0, -1])

    def step(self) -> None:
        rows, device, model = list(self.rows), self.loaded.device, self.loaded.model
        count, longest = len(rows), max(row.encoder_length for row in rows)
        choice, which = self.attention()
        with torch.inference_mode():
            tokens = torch.tensor([[row.decoding.token] for row in rows], device=device)
            positions = torch.tensor([row.position for row in rows], device=device)
            self.cache.decode(positions, int(positions.max()) + 1)
            self.cross.read(count, longest)
            self.caches.is_updated = dict.fromkeys(range(self.layers), True)  # every row's cross keys are in
            reads = torch.arange(self.cache.view_length, device=device) <= positions[:, None]
            encoder_lengths = torch.tensor([row.encoder_length for row in rows], device=device)
            encoder_mask = torch.arange(longest, device=device) < encoder_lengths[:, None]
            # The encoder's output is read only for its shape: its keys are in the cross cache
            hidden = torch.zeros((), dtype=model.dtype, device=device).expand(count, longest, model.config.d_model)
            if self.positions is not None:
                self.positions.positions = positions[:, None]
            try:
                logits = model(
                    decoder_input_ids=tokens,
                    decoder_attention_mask=reads,
                    encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                    attention_mask=encoder_mask,
                    past_key_values=self.caches,
                    use_cache=True,
                    studio_choice=choice,
                    studio_rows=None if which is None else torch.tensor(which, device=device),
                    studio_pages=self.cache.page_bounds(),
                    position_ids=positions[:, None],  # a sparse pattern's decode step reads each row's own
                ).logits[:, -1]
            finally:
                if self.positions is not None:
                    self.positions.positions = None
        for i, row in enumerate(rows):
            row.position += 1
            row.took_step(count, None)
            self._accept(row, logits[i])

    def _move_row(self, source: int, target: int) -> None:
        self.cache.move_row(source, target)
        self.cross.move_row(source, target)

    def memory_bytes(self) -> int:
        return self.cache.memory_bytes() + self.cross.memory_bytes()
