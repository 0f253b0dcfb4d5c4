"""One decode step of a batch of sequences, and the shapes that decide which step runs: a length
bucket (powers of two from 256), the attention choice (one for every row, or each row's: RowChoices)
and the row count."""

from __future__ import annotations

from dataclasses import replace

import torch

from engine.attention.choice import DENSE, AttentionChoice, RowChoices, StepChoice
from engine.attention.patterns import pattern_for
from engine.runtime.kv_cache import RowCache

MIN_BUCKET = 256


def bucket_for(tokens: int) -> int:
    """The cache length for a request of `tokens` (input + new): the next power of two, at least 256."""
    return max(MIN_BUCKET, 1 << (tokens - 1).bit_length())


def decode_step(
    model,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    cache: RowCache,
    choice: StepChoice,
    traced: bool = False,
    which: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (rows, vocab) of one new token per sequence: `tokens` (rows, 1) at `positions` (rows,) of
    the cache's first rows, each sequence reading its own keys up to its position (cache.decode first).
    `traced`: the step as the compiler traces it (engine.runtime.compile). With RowChoices, `which`
    (rows,) gives each row's index into its choices."""
    reads = torch.arange(cache.view_length, device=tokens.device) <= positions[:, None]
    return _logits(model, tokens, reads, positions[:, None], cache, choice, traced, which)[:, -1]


def verify_step(
    model,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    cache: RowCache,
    choice: StepChoice = DENSE,
    traced: bool = False,
    which: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (rows, width, vocab) of `tokens` (rows, width) at `positions` (rows, width) of the cache's
    first rows: each row's last token and its speculated ones (engine.runtime.speculation), each token
    reading its row's keys up to its own position (cache.decode first). Dense attention only (`choice`
    is DENSE; decode_step's signature, so that the compiler treats both alike): the mask is built here,
    per token, and transformers hands a 4D mask to attention as it is."""
    assert choice.mode == "dense" and which is None  # engine.api.validation refuses speculation with sparse attention
    reads = torch.arange(cache.view_length, device=tokens.device) <= positions[:, None, :, None]
    return _logits(model, tokens, reads, positions, cache, choice, traced, which)


def _logits(model, tokens, reads, positions, cache: RowCache, choice, traced: bool, which) -> torch.Tensor:
    # The attention choice goes in as an argument: the compiler traces it as a constant, so the whole
    # step is one graph.
    out = model(
        input_ids=tokens,
        attention_mask=reads,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        studio_choice=choice,
        studio_pages=cache.page_bounds(),
        studio_traced=traced,
        studio_rows=which,
    )
    return out.logits


def step_width(tokens: int) -> int:
    """The tokens a row computes in a speculating step of `tokens` (its last one and its guesses): the
    next power of two, so that a few compiled steps serve every count (extra places are padding)."""
    return 1 << (tokens - 1).bit_length()


StepKey = tuple[int, StepChoice]  # (bucket, attention without stats): what one compiled step serves
BatchKey = tuple[int, bool]  # (bucket, whether its cache keeps page bounds): one batch of sequences


def step_key(bucket: int, choice: AttentionChoice) -> tuple[int, AttentionChoice]:
    """Requests that would run the same step share it: sparse settings the step does not read are
    reset, and a pattern that keeps every key of the bucket is dense attention."""
    if choice.mode == "dense":
        return bucket, DENSE
    settings = replace(choice.settings, block_size=DENSE.settings.block_size)  # only prefill's kernel reads it
    if pattern_for(settings, causal=True).keeps_all(bucket, settings):
        return bucket, DENSE
    return bucket, AttentionChoice("sparse", settings)


def keeps_pages(choice: StepChoice) -> bool:
    """Whether a cache keeps per-page key bounds: its steps pick keys by content (Quest)."""
    if isinstance(choice, RowChoices):  # a batch's rows all keep pages or none do (engine.runtime.scheduler)
        return keeps_pages(choice.choices[0])
    return choice.mode == "sparse" and pattern_for(choice.settings, causal=True).query_aware


def own_batch(key: tuple[int, AttentionChoice]) -> BatchKey:
    """The batch a request of this bucket and choice starts when it joins none: pages kept if it reads them."""
    return key[0], keeps_pages(key[1])


def step_choice(choices: list[AttentionChoice]) -> tuple[StepChoice, list[int] | None]:
    """The attention of a step whose rows took `choices` (each a step_key's): their one choice where
    they share it (the step each would take alone), else RowChoices with each row's index into them."""
    distinct = sorted(set(choices), key=repr)  # a fixed order: a compiled step serves any order of rows
    if len(distinct) == 1:
        return distinct[0], None
    return RowChoices(tuple(distinct)), [distinct.index(choice) for choice in choices]


def step_rows(batch: int, capacity: int) -> int:
    """The rows a compiled step for `batch` sequences runs: the next power of two, at most the capacity
    (the extra rows are free ones, computed and ignored)."""
    return min(capacity, 1 << (batch - 1).bit_length())
