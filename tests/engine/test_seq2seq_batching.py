"""Encoder-decoder requests decode in batches (engine.runtime.seq2seq): each row with its own encoder
output, keys and position gets the tokens it gets alone, and alone what a forward without a cache
picks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from test_batching import TEXTS, together, wait_until
from test_engine import ask

from engine import Engine, Result, run, stream_request
from engine.platform.errors import InputError
from engine.runtime.decoding import encode_prompt


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


@pytest.mark.parametrize("model", ["tiny-marian", "tiny-bart", "tiny-t5"])
def test_a_request_alone_picks_what_a_whole_forward_picks(cache, model):
    """Each greedy token is the most likely one of a forward over the input and every token before it,
    without a cache (the reference the batched path is measured against)."""
    loaded = cache.get(model, "fp32")
    for text in TEXTS[:2]:
        request = ask(model, text=text, max_new_tokens=8, precision="fp32")
        tokens = run(request, cache).token_ids
        ids = encode_prompt(loaded, request).input_ids
        for i, token in enumerate(tokens):
            prefix = torch.tensor([[loaded.decoder_start, *tokens[:i]]])
            with torch.inference_mode():
                logits = loaded.model(input_ids=ids, decoder_input_ids=prefix).logits[0, -1]
            assert int(logits.argmax()) == token


@pytest.mark.parametrize("model", ["tiny-marian", "tiny-bart", "tiny-t5"])
@pytest.mark.parametrize("pattern", [None, "auto", "mixed"])
def test_a_request_gives_the_same_tokens_alone_and_in_a_batch(cache, model, pattern):
    """Inputs of different lengths (each row's encoder output masked to its own), greedy and seeded
    sampling requests (the tiny BART's greedy answers end at once), dense, a 4-key sliding window
    (each row's own position decides its keys; the query-aware patterns serve causal models only) or
    every other row on it (`mixed`: one step, each row attending by its own choice): each row as it
    was alone. T5's positions are computed inside its attention from one offset for the whole step,
    so its rows decode one to a batch."""
    sparse = {"attention": "sparse", "pattern": "auto", "window": 4, "sinks": 1, "budget": 16}
    kinds = [sparse if pattern == "auto" or (pattern == "mixed" and i % 2) else {} for i in range(len(TEXTS))]
    options = {"max_new_tokens": 24, "precision": "fp32"}
    requests = [ask(model, text=text, **options, **kind) for text, kind in zip(TEXTS, kinds, strict=True)]
    requests += [
        ask(model, text=text, temperature=0.9, seed=i, **options, **kind)
        for i, (text, kind) in enumerate(zip(TEXTS, kinds, strict=True))
    ]
    alone = [run(request, cache) for request in requests]
    in_batch = together(cache, requests)
    for one, batched in zip(alone, in_batch, strict=True):
        assert batched.token_ids == one.token_ids
        assert one.metrics.batch_size == 1
    sizes = [r.metrics.batch_size for r in in_batch if r.metrics.new_tokens > 1]
    assert sizes and (max(sizes) == 1 if model == "tiny-t5" else min(sizes) > 1)
    if pattern == "mixed" and model != "tiny-t5":  # half of them on either choice: rows of both shared steps
        assert max(sizes) > len(sizes) / 2
    assert wait_until(lambda: not cache.get(model, "fp32").batches.by_key)  # their caches are freed


def test_requests_that_arrive_while_others_decode_join_their_batch(cache):
    """A row joins at its own step while others decode and leave (rows move to stay packed), and
    still gets its tokens alone."""
    requests = [
        ask("tiny-marian", text=text, max_new_tokens=40 - 8 * i, precision="fp32") for i, text in enumerate(TEXTS)
    ]
    alone = [run(request, cache) for request in requests]
    streams = []
    for request in requests:
        stream = stream_request(request, cache)
        next(stream)  # its first token: it has joined
        streams.append(stream)
    results = [next(item for item in stream if isinstance(item, Result)) for stream in streams]
    assert [r.token_ids for r in results] == [r.token_ids for r in alone]
    assert max(r.metrics.batch_size for r in results) > 1


def test_an_answer_longer_than_the_decoders_position_table_is_refused_alone(cache):
    """Past its table's end a row would fail the step of every row: it is refused when it joins, and
    a request decoding meanwhile gets its tokens alone."""
    short = ask("tiny-marian", text=TEXTS[1], max_new_tokens=12, precision="fp32")
    alone = run(short, cache)
    too_long = ask("tiny-marian", text=TEXTS[0], max_new_tokens=300, precision="fp32")
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run, short, cache), pool.submit(run, too_long, cache)]
        assert futures[0].result(timeout=60).token_ids == alone.token_ids
        with pytest.raises(InputError, match="256 positions: ask for at most 255 new tokens"):
            futures[1].result(timeout=60)
