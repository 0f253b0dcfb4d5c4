"""The attention picture of one request, layer and head: what the chosen attention computed, and
where dense attention's probability lies.

The request's prompt is prefilled the way the request would be (its attention choice, the cache it
would decode from), then one decode step runs with the first greedy token. The layer's queries and
keys are read as attention receives them (after the rotary embedding); from them come the pairs the
pattern keeps at prefill (its rule, and the key blocks a content pattern picks from these very
queries and keys), the tiles of `block` x `block` pairs that hold them, the keys the decode step read,
and that head's dense attention probabilities, to measure how much of their mass the pattern keeps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.attention.choice import AttentionChoice
from engine.attention.content import PickedBlocks, prefills_by_content
from engine.attention.context import inspect_attention, probe_attention
from engine.attention.patterns import explicit_mask, pattern_for
from engine.attention.positional import Pattern
from engine.backends import Admission
from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.models.registry import get_spec
from engine.platform.errors import InputError
from engine.runtime.decoding import encode_prompt
from engine.runtime.engine import Engine
from engine.runtime.kv_cache import RowCache
from engine.runtime.step import bucket_for, decode_step, keeps_pages

MAP_TOKENS = 1024  # up to here the map carries each (query, key) probability; beyond, per tile only
MAP_LIMIT = 8192  # longest prompt mapped: the measures hold a few (tokens x tokens) tensors, ~1.5 GB at 8k


@dataclass
class AttentionMap:
    model: str
    attention: str  # dense, or the sparse pattern's name
    side: str  # which run of the request it shows: "" for a single run, "B" for a comparison's
    layer: int
    head: int
    kv_head: int  # the key/value head the query head reads (grouped-query attention)
    layers: int
    heads: int
    tokens: int  # the prompt's tokens
    block: int  # tokens per side of a tile
    tiles: list[tuple[int, int]]  # (query block, key block) tiles holding a pair the prefill computed
    content_tiles: list[tuple[int, int]]  # of those, the ones holding a pair only a picked block adds
    density: float  # share of the causal (query, key) pairs the prefill computed, this head
    mass_recall: float  # share of this head's dense attention probability on those pairs (mean over queries)
    decode_keys: list[int]  # positions the first decode step read for this head
    decode_probabilities: list[float]  # that step's dense attention probability per key position (tokens + 1)
    decode_mass_recall: float  # share of that step's dense attention probability on them
    tile_mass: list[list[float]]  # (query blocks, key blocks): dense probability per tile, mean over its queries
    probabilities: list[list[float]] | None  # (tokens, tokens) dense probabilities; None past MAP_TOKENS

    def to_dict(self) -> dict:
        return asdict(self)


def attention_map(
    admission: Admission, layer: int, head: int, engine: Engine, progress: ProgressFn | None = None
) -> AttentionMap:
    """The map of an admitted request (a comparison: its B side) at `layer` and query `head`."""
    run = admission.run
    options = run.request.options
    if (known := get_spec(options.model).family) not in (None, "causal"):  # refused before it loads
        raise InputError(f"The attention map shows decoder (causal) models; {options.model} is a {known} model.")
    if (loaded := run.backend.load(options, progress)) is None:
        raise InputError(f"{options.model} runs on a remote server: its attention is not visible from here.")
    name, family = loaded.spec.name, loaded.spec.family
    if family != "causal":
        raise InputError(f"The attention map shows decoder (causal) models; {name} is a {family} model.")
    config = loaded.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    if not 0 <= layer < layers or not 0 <= head < heads:
        raise InputError(f"{name} has layers 0-{layers - 1} and heads 0-{heads - 1}; got layer {layer}, head {head}.")
    request = GenerationRequest(options, text=run.request.text, messages=run.request.messages)
    encoded = run.prompt.for_model(loaded) if run.prompt is not None else None
    ids = (encoded or encode_prompt(loaded, request)).input_ids
    if ids.shape[1] > MAP_LIMIT:
        raise InputError(f"The attention map shows prompts up to {MAP_LIMIT} tokens; this one has {ids.shape[1]}.")
    captured = engine.runner.call(lambda _: _capture(loaded, request, ids, layer), progress=progress)
    return _measure(loaded, options, captured, layer, head, "B" if admission.axis is not None else "")


@dataclass
class _Captured:
    query: torch.Tensor  # (H, L, D): the prefill's queries at the layer
    key: torch.Tensor  # (Hkv, L, D)
    scaling: float
    decode_query: torch.Tensor  # (H, D)
    decode_key: torch.Tensor  # (Hkv, L + 1, D): the cache the step read
    decode_rows: torch.Tensor | None  # (Hkv, K) rows the step gathered, or None: the whole cache
    decode_keep: torch.Tensor | None  # (Hkv, K) which of them counted; None: no probe ran (dense attention)


def _capture(loaded: LoadedModel, request: GenerationRequest, ids: torch.Tensor, layer: int) -> _Captured:
    """Prefill the prompt `ids` and one greedy decode step as the request would run them, reading the layer."""
    model, options = loaded.model, request.options
    length = ids.shape[1]
    choice = AttentionChoice("sparse" if options.attention == "sparse" else "dense", options.sparse)
    seen: dict[str, tuple] = {}

    def inspector(at: int, query, key, scaling) -> None:
        if at == layer:  # the layer's first call is the prefill, its second the decode step
            seen["decode" if "prefill" in seen else "prefill"] = (query, key, scaling)

    def probe(at: int, query, key, rows, keep) -> None:
        if at == layer:
            seen["probe"] = (rows, keep)

    cache = RowCache(model.config.num_hidden_layers, 1, bucket_for(length + 1), pages=keeps_pages(choice))
    with torch.inference_mode(), inspect_attention(inspector), probe_attention(probe):
        cache.prefill(0)
        out = model(input_ids=ids, position_ids=torch.arange(length, device=ids.device)[None], past_key_values=cache,
                    use_cache=True, logits_to_keep=1, studio_choice=choice)  # fmt: skip
        position = torch.tensor([length], device=ids.device)
        cache.decode(position, length + 1)
        decode_step(model, out.logits[:, -1].argmax(-1, keepdim=True), position, cache, choice)
    query, key, scaling = seen["prefill"]
    decode_query, decode_key, _ = seen["decode"]
    rows, keep = seen.get("probe", (None, None))

    def here(tensor):  # the measures below are built on the CPU, whatever device the model is on
        return None if tensor is None else tensor.float().cpu() if tensor.is_floating_point() else tensor.cpu()

    return _Captured(
        here(query[0]), here(key[0]), scaling, here(decode_query[0, :, 0]), here(decode_key[0, :, : length + 1]),
        None if rows is None else here(rows[0]), None if keep is None else here(keep[0, :, 0].expand(key.shape[1], -1)),
    )  # fmt: skip


def _measure(
    loaded: LoadedModel, options: RunOptions, seen: _Captured, layer: int, head: int, side: str
) -> AttentionMap:
    heads, length, _ = seen.query.shape
    kv_head = head // (heads // seen.key.shape[0])
    sparse = options.attention == "sparse"
    pattern = pattern_for(options.sparse, causal=True) if sparse else None
    positions = torch.arange(length)
    causal = positions[:, None] >= positions[None, :]
    kept, content = _prefill_pairs(pattern, options, seen, kv_head, causal)
    block = pattern.block if pattern is not None and prefills_by_content(pattern) else options.block_size
    scores = (seen.query[head] @ seen.key[kv_head].T) * seen.scaling
    probabilities = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)

    decode_scores = (seen.decode_query[head] @ seen.decode_key[kv_head].T) * seen.scaling
    decode_probabilities = torch.softmax(decode_scores, dim=-1)
    decode_keys = _decode_keys(pattern, options, seen, kv_head, length)
    return AttentionMap(
        model=loaded.spec.name, attention=pattern.name if pattern is not None else "dense",
        side=side, layer=layer, head=head, kv_head=kv_head, layers=loaded.model.config.num_hidden_layers,
        heads=heads, tokens=length, block=block,
        tiles=_tiles(kept, block), content_tiles=_tiles(content, block),
        density=float(kept.sum() / causal.sum()),
        mass_recall=float((probabilities * kept).sum() / length),
        decode_keys=decode_keys, decode_probabilities=decode_probabilities.tolist(),
        decode_mass_recall=float(decode_probabilities[decode_keys].sum()),
        tile_mass=_tile_mass(probabilities, block),
        probabilities=probabilities.tolist() if length <= MAP_TOKENS else None,
    )  # fmt: skip


def _prefill_pairs(
    pattern: Pattern | None, options: RunOptions, seen: _Captured, kv_head: int, causal: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pairs the prefill computed, of them those only picked blocks reach), (L, L) bool each, by the
    hook's own rules: dense when asked, when the pattern keeps all, or for a pattern that prefills densely."""
    settings, length = options.sparse, causal.shape[0]
    nothing = torch.zeros_like(causal)
    if (
        pattern is None
        or pattern.keeps_all(length, settings)
        or (pattern.query_aware and not pattern.prefill_by_content)
    ):
        return causal, nothing
    positions = torch.arange(length)
    positional = explicit_mask(pattern, settings, positions, positions) & causal
    if not prefills_by_content(pattern):
        return positional, nothing
    picked = pattern.select_blocks(seen.query[None], seen.key[None], 0, settings)
    one_head = PickedBlocks(picked.blocks[:, kv_head : kv_head + 1], picked.valid[:, kv_head : kv_head + 1], picked.block,
                            picked.key_blocks)  # fmt: skip
    kept = explicit_mask(pattern, settings, positions, positions, one_head)[0, 0] & causal
    return kept, kept & ~positional


def _decode_keys(pattern: Pattern | None, options: RunOptions, seen: _Captured, kv_head: int, length: int) -> list[int]:
    """Positions the decode step at `length` read: what the probe saw it gather, else (dense attention,
    or a pattern masking the whole cache by its rule) every key its rule allows."""
    if seen.decode_keep is not None:
        if seen.decode_rows is None:
            return torch.nonzero(seen.decode_keep[kv_head]).flatten().tolist()
        return sorted(set(seen.decode_rows[kv_head][seen.decode_keep[kv_head]].tolist()))
    if pattern is None or pattern.keeps_all(length + 1, options.sparse):
        return list(range(length + 1))
    allowed = explicit_mask(pattern, options.sparse, torch.tensor([length]), torch.arange(length + 1))[0]
    return torch.nonzero(allowed).flatten().tolist()


def _by_tile(matrix: torch.Tensor, block: int) -> torch.Tensor:
    """A (tokens, tokens) matrix zero-padded to whole tiles, as (query blocks, block, key blocks, block)."""
    blocks = -(-matrix.shape[0] // block)
    pad = blocks * block - matrix.shape[0]
    return torch.nn.functional.pad(matrix, (0, pad, 0, pad)).reshape(blocks, block, blocks, block)


def _tiles(pairs: torch.Tensor, block: int) -> list[tuple[int, int]]:
    """The (query block, key block) tiles holding at least one of `pairs`."""
    return [tuple(t) for t in torch.nonzero(_by_tile(pairs, block).any(3).any(1)).tolist()]


def _tile_mass(probabilities: torch.Tensor, block: int) -> list[list[float]]:
    """Per tile, the dense probability its keys hold, averaged over the tile's queries."""
    queries = _by_tile(torch.ones_like(probabilities), block)[:, :, 0, 0].sum(1)  # real queries per query block
    return (_by_tile(probabilities, block).sum(3).sum(1) / queries[:, None]).tolist()
