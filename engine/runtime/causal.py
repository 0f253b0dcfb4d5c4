"""A causal model's batches: one KV cache of `capacity` rows and one decode step for all of them
(continuous batching, engine.runtime.batching).

A request joins at the next step: its prompt is prefilled alone into a free row of the batch's
KV cache, its first token comes from that prefill, and from then on each step gives it one token.
While other requests decode, a prompt is prefilled in chunks (`join_step`), one between two steps,
into a cache of its own until its last, so their steps wait for a chunk, not for a whole prompt
(chunked prefill, as in Sarathi-Serve and vLLM; here the chunk is a forward of its own before the
step, not rows of the step's own forward).

With speculation (engine.runtime.speculation), a step gives each row its last token and its guesses
in one forward; rows without guesses take part with their one token. A step with rows on sparse
attention checks no guesses (their keys follow rules a run of tokens would need its own of). Each
row keeps what its own picks confirm. A draft model guesses by stepping the batch's rows itself, on
the batch's own cache, before that forward. `auto` rows guess only when the step is expected to pay:
the tokens their guesses are likely to give (each row's share kept so far) against the measured cost
of the wider step. What a step guesses is decided in engine.runtime.speculation (`plan`).
"""

from __future__ import annotations

import torch

from engine.attention.choice import DENSE, AttentionChoice, StepChoice
from engine.models.loader import LoadedModel
from engine.platform.measure import now
from engine.runtime.batching import Batch, JoinError, Row
from engine.runtime.compile import CompiledStep
from engine.runtime.kv_cache import RowCache
from engine.runtime.speculation import StepCosts, plan
from engine.runtime.step import BatchKey, decode_step, verify_step


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
