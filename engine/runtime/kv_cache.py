"""A KV cache of independent sequences, one per row, each at its own position (continuous batching).

A row holds exactly what its sequence would hold alone: its keys at positions 0, 1, 2, ... and the
model sees its own position ids. So a request decodes to the same tokens in a batch as alone, and
rows join and leave a batch without moving the others' keys. Before each forward the caller says
what the forward is (`prefill`: one sequence's prompt into one row; `decode`: one new token for each
of the first `count` rows, or several each: a row's last token and its speculated ones,
engine.runtime.speculation); the layers then write the new keys where they belong and hand attention
a view of the rows and positions that forward reads.

The tensors are allocated once per cache (capacity rows x length positions), so a compiled decode
step traces it with static shapes, like transformers' StaticCache. With `pages`, each layer also
keeps Quest's per-page key bounds (engine.attention.patterns.QuestPages), set for a row by its
prefill and updated by each decode step for the one page it writes to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from engine.attention.content import PAGE, page_bounds


def kv_bytes_per_position(config, dtype: torch.dtype) -> int:
    """The keys and values one position of one sequence holds, every layer (of the decoder: an
    encoder-decoder's decoder holds as much again for its cross-attention, engine.runtime.seq2seq)."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None)
    head_dim = head_dim or config.hidden_size // config.num_attention_heads
    return 2 * decoder_layers(config) * heads * head_dim * dtype.itemsize


def decoder_layers(config) -> int:
    """The layers that keep keys: a causal model's, or an encoder-decoder's decoder's."""
    return (
        getattr(config, "decoder_layers", None)
        or getattr(config, "num_decoder_layers", None)
        or config.num_hidden_layers
    )


@dataclass
class RowState:
    """What a cache's layers read: its shape, and what the next forward is (the cache sets it). The
    layers hold this, not the cache: a layer pointing back at its cache made a reference cycle, whose
    tensors are freed only when Python's cyclic collector next runs a full pass, which a long-running
    process seldom does (each retired batch's cache stayed resident: +90 MB per 25 requests, measured)."""

    capacity: int
    length: int
    keeps_pages: bool
    prefill_row: int | None = None
    prefill_start: int = 0  # prefill: the position its first token takes (a later chunk of a prompt)
    count: int = 0  # decode: rows this forward reads, from row 0
    view_length: int = 0  # decode: positions this forward reads, from 0
    # decode: (count,) one token a row, or (count, width) several
    positions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


class RowCache(Cache):
    def __init__(self, layers: int, capacity: int, length: int, pages: bool = False):
        self.capacity, self.length, self.keeps_pages = capacity, length, pages
        self.rows = RowState(capacity, length, pages, view_length=length)
        super().__init__(layers=[RowLayer(self.rows) for _ in range(layers)])

    @property
    def view_length(self) -> int:
        return self.rows.view_length

    @property
    def row_layers(self) -> list[RowLayer]:
        # Cache types its layers as any kind of layer; this cache holds only its own
        return cast("list[RowLayer]", self.layers)

    def prefill(self, row: int, start: int = 0) -> None:
        """The next forward is the prompt of the sequence in `row`, or its chunk from position `start`
        on (the keys before it are in the row already)."""
        self.rows.prefill_row, self.rows.prefill_start = row, start

    def decode(self, positions: torch.Tensor, view_length: int) -> None:
        """The next forward is one token for each of the first len(positions) rows, at those positions
        ((rows,)), or several ((rows, width)); attention reads positions [0, view_length) of them (the
        caller masks each row's own length)."""
        rows = self.rows
        rows.prefill_row, rows.count, rows.view_length, rows.positions = None, len(positions), view_length, positions

    def move_row(self, source: int, target: int) -> None:
        """Copy a sequence to another row (the batch stays packed in rows 0..count-1)."""
        with torch.inference_mode():  # the cache's tensors were made under it
            for layer in self.row_layers:
                if layer.is_initialized:
                    for tensor in layer.tensors:
                        tensor[target] = tensor[source]

    def take_row(self, row: int, source: RowCache, length: int) -> None:
        """Put `source`'s sequence in row 0 (its first `length` positions and its page bounds) into `row`:
        a prompt prefilled in chunks in a cache of its own joins the batch's."""
        with torch.inference_mode():
            for mine, theirs in zip(self.row_layers, source.row_layers, strict=True):
                if not mine.is_initialized:
                    mine.lazy_initialization(theirs.keys[:1], theirs.values[:1])
                mine.keys[row, :, :length] = theirs.keys[0, :, :length]
                mine.values[row, :, :length] = theirs.values[0, :, :length]
                if self.keeps_pages:
                    mine.low[row], mine.high[row] = theirs.low[0], theirs.high[0]

    def page_bounds(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per layer, each page's (min, max) key bounds, (capacity, heads, pages, D) each; None unless kept."""
        if not self.keeps_pages:
            return None
        return [(layer.low, layer.high) for layer in self.row_layers]

    def memory_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for layer in self.row_layers if layer.is_initialized for t in layer.tensors
        )


class RowLayer(CacheLayerMixin):
    is_compileable = True  # static shapes: transformers then never skips the mask for a one-token step
    is_sliding = False
    # Tensors once lazy_initialization has run, before anything reads them (low, high: with pages only)
    keys: torch.Tensor
    values: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, rows: RowState):
        super().__init__()
        self.rows = rows

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Everything a row of this layer holds."""
        return (self.keys, self.values, self.low, self.high) if self.rows.keeps_pages else (self.keys, self.values)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        rows, heads = self.rows, key_states.shape[1]
        make = lambda dim: torch.zeros(  # noqa: E731
            (rows.capacity, heads, rows.length, dim), dtype=key_states.dtype, device=key_states.device
        )
        self.keys, self.values = make(key_states.shape[-1]), make(value_states.shape[-1])
        if rows.keeps_pages:
            self.low, self.high = page_bounds(
                self.keys, torch.zeros(rows.length, dtype=torch.bool, device=self.keys.device)
            )
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows = self.rows
        if rows.prefill_row is not None:  # (1, H, n, D): a prompt (or a chunk of it) into its row
            row, start = rows.prefill_row, rows.prefill_start
            n = start + key_states.shape[2]
            self.keys[row, :, start:n] = key_states[0]
            self.values[row, :, start:n] = value_states[0]
            if rows.keeps_pages:  # the row's bounds anew: keys past the prompt are a former sequence's
                written = torch.arange(rows.length, device=key_states.device) < n
                self.low[row], self.high[row] = page_bounds(self.keys[row], written)
            return self.keys[row : row + 1, :, :n], self.values[row : row + 1, :, :n]
        batch = torch.arange(rows.count, device=key_states.device)
        if rows.positions.dim() == 2:  # (count, H, width, D): a row's tokens at its positions (no pages)
            self.keys[batch[:, None], :, rows.positions] = key_states.transpose(1, 2)
            self.values[batch[:, None], :, rows.positions] = value_states.transpose(1, 2)
            return self.keys[: rows.count, :, : rows.view_length], self.values[: rows.count, :, : rows.view_length]
        # (count, H, 1, D): each row's new key at that row's own position
        self.keys[batch, :, rows.positions] = key_states[:, :, 0]
        self.values[batch, :, rows.positions] = value_states[:, :, 0]
        if rows.keeps_pages:  # only the page each new key lands in changes
            page = rows.positions // PAGE
            self.low[batch, :, page] = torch.minimum(self.low[batch, :, page], key_states[:, :, 0])
            self.high[batch, :, page] = torch.maximum(self.high[batch, :, page], key_states[:, :, 0])
        return self.keys[: rows.count, :, : rows.view_length], self.values[: rows.count, :, : rows.view_length]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        if self.rows.prefill_row is not None:
            return self.rows.prefill_start + query_length, 0
        return self.rows.view_length, 0

    def get_seq_length(self) -> int:
        # The query offset transformers' causal mask starts from: a prompt's chunk's start (0 for a whole
        # prompt); for a decode step the last position read, so causality keeps every key and each row's
        # own length mask decides.
        return self.rows.prefill_start if self.rows.prefill_row is not None else self.rows.view_length - 1

    def get_max_length(self) -> int:
        return self.rows.length


class CrossCache(Cache):
    """An encoder-decoder batch's cross-attention keys and values: one row per sequence, its encoder
    output's keys at positions 0..n-1, computed once by the row's first decoder forward (`prefill`)
    and read by every step after it (`read`: the model then takes each layer's `keys` and `values` as
    they are). Each row's encoder length is masked by the step's encoder attention mask."""

    def __init__(self, layers: int, capacity: int, length: int):
        self.capacity, self.length = capacity, length
        super().__init__(layers=[CrossLayer(capacity, length) for _ in range(layers)])

    @property
    def cross_layers(self) -> list[CrossLayer]:
        return cast("list[CrossLayer]", self.layers)

    def prefill(self, row: int) -> None:
        """The next forward computes the keys of the sequence in `row` from its encoder output."""
        for layer in self.cross_layers:
            layer.prefill_row = row

    def read(self, count: int, length: int) -> None:
        """The next forward reads the first `count` rows' keys at positions [0, length)."""
        for layer in self.cross_layers:
            layer.prefill_row = None
            layer.keys, layer.values = layer.stored_keys[:count, :, :length], layer.stored_values[:count, :, :length]

    def move_row(self, source: int, target: int) -> None:
        with torch.inference_mode():
            for layer in self.cross_layers:
                if layer.is_initialized:
                    layer.stored_keys[target] = layer.stored_keys[source]
                    layer.stored_values[target] = layer.stored_values[source]

    def memory_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for layer in self.cross_layers
            if layer.is_initialized
            for t in (layer.stored_keys, layer.stored_values)
        )


class CrossLayer(CacheLayerMixin):
    stored_keys: torch.Tensor
    stored_values: torch.Tensor

    def __init__(self, capacity: int, length: int):
        super().__init__()
        self.capacity, self.length = capacity, length
        self.prefill_row: int | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        make = lambda like: torch.zeros(  # noqa: E731
            (self.capacity, like.shape[1], self.length, like.shape[-1]), dtype=like.dtype, device=like.device
        )
        self.stored_keys, self.stored_values = make(key_states), make(value_states)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        # (1, H, n, D): one sequence's encoder output, the first forward of its decoder
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self.prefill_row is not None, "a cross cache is written only by a row's first decoder forward"
        n = key_states.shape[2]
        self.stored_keys[self.prefill_row, :, :n] = key_states[0]
        self.stored_values[self.prefill_row, :, :n] = value_states[0]
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length, 0

    def get_seq_length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def get_max_length(self) -> int:
        return self.length
