"""Continuous batching (engine.runtime.batching, engine.runtime.runner) on tiny local models: requests that arrive
together decode in one batch and each gets what it would get alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch
from test_engine import ask

from engine import Chunk, Comparison, Engine, GenerationRequest, Result, run, stream_request
from engine.attention.choice import DENSE, AttentionChoice, RowChoices, SparseSettings
from engine.runtime.batching import planned_bytes
from engine.runtime.causal import CausalBatch
from engine.runtime.step import keeps_pages, step_choice, step_key

TEXTS = [  # prompts of different lengths: each row of the batch stands at its own position
    "hello",
    "the quick brown fox jumps over the lazy dog " * 3,
    "translate summarize classify positive negative neutral code python",
    "le chat est sur la table das ist gut el perro " * 5,
]


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def wait_until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def together(cache: Engine, requests: list[GenerationRequest]) -> list[Result]:
    """Run the requests so that all are admitted in the same round, in the order given (they start
    in one batch, whatever the timing of their threads): the engine is held busy until every one
    is waiting."""
    for request in requests:  # loading runs on the engine's thread too: load before holding it
        cache.get(request.options.model, request.options.precision)
    holding, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(len(requests) + 1) as pool:
        pool.submit(cache.runner.call, lambda _: (holding.set(), release.wait()))
        assert holding.wait(10)
        futures = []
        for request in requests:  # one at a time: they queue (and are placed) in the order given
            futures.append(pool.submit(run, request, cache))
            assert wait_until(lambda: cache.runner.waiting() == len(futures))
        release.set()
        return [future.result(timeout=120) for future in futures]


@pytest.mark.parametrize(
    ("attention", "pattern"), [("dense", "auto"), ("sparse", "auto"), ("sparse", "quest"), ("sparse", "block_topk")]
)
def test_a_request_gives_the_same_tokens_alone_and_in_a_batch(cache, attention, pattern):
    """Greedy, different prompt lengths, dense, sparse (an 8-key window: the rows' own positions
    decide their keys) and Quest (pages picked by each row's own query and keys), plus one seeded
    sampling request: each row as it was alone. In fp32: a batch multiplies matrices in another order
    than one row does, and bf16's rounding (~0.002 on these logits) would flip near-ties of this
    random model."""
    options = {"max_new_tokens": 10, "attention": attention, "window": 8, "sinks": 2, "precision": "fp32",
               "pattern": pattern, "budget": 16}  # fmt: skip
    requests = [ask("tiny-llama", text=text, **options) for text in TEXTS]
    requests.append(ask("tiny-llama", text=TEXTS[1], temperature=0.9, seed=7, **options))
    alone = [run(request, cache) for request in requests]
    in_batch = together(cache, requests)
    for one, batched in zip(alone, in_batch, strict=True):
        assert batched.token_ids == one.token_ids
        assert one.metrics.batch_size == 1
    assert all(r.metrics.batch_size > 1 for r in in_batch if r.metrics.new_tokens > 1)
    assert max(r.metrics.batch_size for r in in_batch) == len(requests)
    assert wait_until(lambda: not cache.get("tiny-llama", "fp32").batches.by_key)  # their caches are freed


def test_dense_and_sparse_requests_decoding_at_once_each_get_their_tokens_alone(cache):
    """A crowd mixes patterns: dense, a sliding window, Quest and block top-k rows admitted in one round
    share steps (each row attending by its own pattern; Quest and block top-k rows in a batch whose
    cache keeps page bounds); every row's greedy tokens are its own alone."""
    sparse = {"attention": "sparse", "window": 8, "sinks": 2, "budget": 16}
    kinds = [{}, {**sparse, "pattern": "auto"}, {**sparse, "pattern": "quest"}, {**sparse, "pattern": "block_topk"}]
    requests = [
        ask("tiny-llama", text=text, max_new_tokens=10, precision="fp32", **kind)
        for text in TEXTS[:2]
        for kind in kinds
    ]
    alone = [run(request, cache) for request in requests]
    mixed = together(cache, requests)
    assert [r.token_ids for r in mixed] == [r.token_ids for r in alone]
    assert all(r.metrics.batch_size > 1 for r in mixed if r.metrics.new_tokens > 1)
    assert max(r.metrics.batch_size for r in mixed) > 2  # two requests a pattern: rows of patterns shared steps


def test_the_rows_of_a_step_attend_by_their_own_choices():
    sliding = AttentionChoice("sparse", SparseSettings(window=8))
    quest = AttentionChoice("sparse", SparseSettings(window=8, pattern="quest"))
    block_topk = AttentionChoice("sparse", SparseSettings(window=8, pattern="block_topk"))
    assert step_choice([DENSE, DENSE]) == (DENSE, None)
    assert step_choice([quest, quest]) == (quest, None)
    mixed, which = step_choice([sliding, DENSE, sliding])
    assert isinstance(mixed, RowChoices) and set(mixed.choices) == {DENSE, sliding} and not keeps_pages(mixed)
    assert [mixed.choices[i] for i in which] == [sliding, DENSE, sliding]
    assert step_choice([DENSE, sliding])[0] == mixed  # one compiled step, whatever the rows' order
    assert keeps_pages(step_choice([quest, block_topk])[0])  # rows that pick keys by content share a cache


@pytest.mark.parametrize("pages", [False, True])
def test_a_compiled_step_of_rows_attending_differently_gives_the_eager_tokens(cache, pages):
    """Dense and sliding-window rows, or (`pages`) Quest rows of two budgets and block top-k rows,
    in one compiled step: each row's tokens are the eager step's, which are its own alone."""
    sparse = {"attention": "sparse", "window": 8, "sinks": 2, "budget": 16}
    if pages:
        kinds = [{**sparse, "pattern": "quest"}, {**sparse, "pattern": "quest", "budget": 32},
                 {**sparse, "pattern": "block_topk"}]  # fmt: skip
    else:
        kinds = [{}, {**sparse, "pattern": "auto"}]
    requests = [ask("tiny-llama", text=TEXTS[2], max_new_tokens=8, precision="fp32", **kind) for kind in kinds]
    alone = [run(request, cache) for request in requests]
    eager = together(cache, requests)
    compiled_decode = cache.get("tiny-llama", "fp32").compiled
    choices = [step_key(256, AttentionChoice(r.options.attention, r.options.sparse))[1] for r in requests]
    mixed, _ = step_choice(choices)
    compiled_decode.compile_now(64, mixed, batch=len(requests))
    assert not compiled_decode.failures
    compiled = together(cache, requests)
    assert {r.metrics.decode_path for r in compiled} == {"compiled"}
    assert [r.token_ids for r in compiled] == [r.token_ids for r in eager] == [r.token_ids for r in alone]


@pytest.mark.parametrize("pattern", [None, "quest"])
def test_a_compiled_batched_step_gives_the_eager_tokens(cache, pattern):
    sparse = {"attention": "sparse", "pattern": pattern, "window": 8, "sinks": 2, "budget": 16} if pattern else {}
    requests = [ask("tiny-llama", text=text, max_new_tokens=8, precision="fp32", **sparse) for text in TEXTS[2:]]
    eager = together(cache, requests)
    compiled_decode = cache.get("tiny-llama", "fp32").compiled
    choice = AttentionChoice("sparse", requests[0].options.sparse) if pattern else DENSE
    compiled_decode.compile_now(64, choice, batch=2)
    assert not compiled_decode.failures
    compiled = together(cache, requests)
    assert [r.metrics.decode_path for r in compiled] == ["compiled", "compiled"]
    assert [r.metrics.decode_path for r in eager] == ["eager", "eager"]
    assert [r.token_ids for r in compiled] == [r.token_ids for r in eager]


SPARSE = {"attention": "sparse", "window": 8, "sinks": 2, "budget": 16}
KINDS = {"dense": {}, "sliding": {**SPARSE, "pattern": "auto"}, "quest": {**SPARSE, "pattern": "quest"},
         "block_topk": {**SPARSE, "pattern": "block_topk"}}  # fmt: skip


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_prompt_prefilled_in_chunks_while_others_decode_gets_its_tokens_alone(cache, monkeypatch, kind):
    """While a request decodes, a new prompt joins its batch in chunks (STUDIO_PREFILL_CHUNK tokens),
    one between two steps; its queries attend by its pattern from each chunk's offset, so its greedy
    tokens are those it gets alone (prefilled whole)."""
    cache.runner.prefill_chunk = 5
    chunks: list[int] = []
    join_step = CausalBatch.join_step
    monkeypatch.setattr(CausalBatch, "join_step", lambda batch, chunk: (chunks.append(chunk), join_step(batch, chunk)))
    options = {"precision": "fp32", **KINDS[kind]}
    joining = ask("tiny-llama", text=TEXTS[3], max_new_tokens=10, **options)
    alone = run(joining, cache)
    assert set(chunks) == {0}  # nothing else decoded: prefilled whole
    chunks.clear()
    events = stream_request(ask("tiny-llama", text=TEXTS[1], max_new_tokens=300, **options), cache)
    assert next(e for e in events if isinstance(e, Chunk)).text  # decoding
    joined = run(joining, cache)
    events.close()
    assert joined.token_ids == alone.token_ids
    assert chunks.count(5) >= joined.metrics.input_tokens // 5  # in chunks, while the other decoded
    assert joined.metrics.batch_size > 1


@pytest.mark.parametrize("kind", ["dense", "quest"])
def test_a_prompt_prefilled_in_chunks_beside_a_compiled_step_gets_its_tokens_alone(cache, kind):
    """A compiled step also runs the rows past the batch's own (a step of 4 rows for 1 sequence, the
    extra rows' keys written, their output unread): a prompt's chunks are out of their way until it
    joins. Quest's page bounds too."""
    options = {"precision": "fp32", **KINDS[kind]}
    long = ask("tiny-llama", text=TEXTS[1], max_new_tokens=300, **options)
    joining = ask("tiny-llama", text=TEXTS[3], max_new_tokens=10, **options)
    alone = run(joining, cache)
    choice = AttentionChoice("sparse", long.options.sparse) if kind != "dense" else DENSE
    compiled = cache.get("tiny-llama", "fp32").compiled
    compiled.compile_now(512, choice, batch=4)  # the long request's bucket; it serves 1 to 4 rows
    assert not compiled.failures
    cache.runner.prefill_chunk = 5
    events = stream_request(long, cache)
    assert next(e for e in events if isinstance(e, Chunk)).text
    joined = run(joining, cache)
    events.close()
    assert joined.metrics.decode_path == "compiled" and joined.metrics.batch_size > 1
    assert joined.token_ids == alone.token_ids


def test_a_prompt_half_prefilled_in_chunks_joins_where_the_batch_has_room_when_it_is_done(cache):
    """A prompt's chunks go to a cache of their own, untouched by the batch's steps and by a row
    leaving meanwhile (the batch stays packed); with its last chunk it joins the batch's next free row
    and decodes to its tokens alone."""
    from engine.platform.measure import PeakMemory
    from engine.runtime.batching import Row
    from engine.runtime.decoding import Decoding, encode_prompt

    loaded = cache.get("tiny-llama", "fp32")
    requests = [ask("tiny-llama", text=t, max_new_tokens=8, precision="fp32") for t in TEXTS[1:]]
    alone = [run(r, cache) for r in requests]
    results: dict[int, Result] = {}

    def row(i: int) -> Row:
        decoding = Decoding(loaded, requests[i], encode_prompt(loaded, requests[i]), time.perf_counter())
        deliver = lambda item: results.__setitem__(i, item) if isinstance(item, Result) else None  # noqa: E731
        return Row(decoding, deliver, cancelled=lambda: False, memory=PeakMemory(loaded.device), queue_s=0)

    batch = CausalBatch(loaded, (256, False), capacity=4)
    first, second, third = row(0), row(1), row(2)
    batch.add(first)
    batch.add(second)
    batch.join_step(0)
    batch.step()
    batch.add(third)
    batch.join_step(4)  # its first chunk
    assert batch.joining == [third] and third.position == 4 and batch.staged is not None
    batch.step()
    batch.remove(first)  # the second moves to row 0: the third will join as row 1
    while batch.joining or batch.rows:
        if batch.joining:
            batch.join_step(4)
        if batch.rows:
            batch.step()
    assert results[2].token_ids == alone[2].token_ids
    assert results[1].token_ids == alone[1].token_ids


def test_requests_join_and_leave_a_running_batch(cache):
    """A long request keeps decoding while short ones join it, finish and leave (their rows reused)."""
    long = ask("tiny-llama", text=TEXTS[0], max_new_tokens=120, precision="fp32")
    alone = run(long, cache)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(run, long, cache)
        time.sleep(0.05)
        shorts = [
            pool.submit(run, ask("tiny-llama", text=t, max_new_tokens=4, precision="fp32"), cache)
            for t in TEXTS[1:] * 2
        ]
        short_results = [f.result(timeout=60) for f in shorts]
        result = first.result(timeout=60)
    assert result.token_ids == alone.token_ids
    assert all(r.metrics.new_tokens <= 4 for r in short_results)


def test_a_request_that_stops_reading_leaves_the_batch(cache):
    long = ask("tiny-llama", text=TEXTS[1], max_new_tokens=400, precision="fp32")
    events = stream_request(long, cache)
    assert next(e for e in events if isinstance(e, Chunk)).text
    batches = cache.get("tiny-llama", "fp32").batches.by_key
    assert batches  # decoding
    events.close()  # the user went away: the engine stops decoding it
    assert wait_until(lambda: not batches)


def test_scoring_runs_between_the_steps_of_a_running_batch(cache):
    """Classification does not wait for a long generation to finish."""
    long = ask("tiny-llama", text=TEXTS[1], max_new_tokens=400)
    with ThreadPoolExecutor(2) as pool:
        generation = pool.submit(run, long, cache)
        time.sleep(0.2)
        scored = run(ask("tiny-llama", text="good movie", candidates=("positive", "negative")), cache)
        assert not generation.done()
        assert generation.result(timeout=120).metrics.new_tokens > 0
    assert scored.finish_reason == "scored" and set(scored.scores) == {"positive", "negative"}


def test_a_comparison_runs_alone(cache):
    """A comparison's runs are timed alone: others wait rather than share their steps."""
    compare = ask("tiny-llama", text=TEXTS[1], max_new_tokens=6, attention="compare", trials=2, window=8)
    with ThreadPoolExecutor(4) as pool:
        others = [pool.submit(run, ask("tiny-llama", text=t, max_new_tokens=30), cache) for t in TEXTS]
        comparison = run(compare, cache)
        assert all(f.result(timeout=60).metrics.new_tokens > 0 for f in others)
    assert isinstance(comparison, Comparison)
    assert comparison.a.metrics.batch_size == comparison.b.metrics.batch_size == 1


def test_waiting_is_measured_apart(cache):
    requests = [ask("tiny-llama", text=text, max_new_tokens=3) for text in TEXTS]
    results = together(cache, requests)
    assert all(r.metrics.queue_ms > 0 for r in results)
    assert all(r.metrics.ttft_ms <= r.metrics.total_ms for r in results)


def test_one_at_a_time_when_the_capacity_is_one(tiny_env):
    cache = Engine(budget_mb=10_000, device=torch.device("cpu"), max_batch=1)
    results = together(cache, [ask("tiny-llama", text=text, max_new_tokens=5) for text in TEXTS])
    assert all(r.metrics.batch_size == 1 for r in results)


def test_a_batch_cache_takes_what_was_planned_and_counts_in_the_budget(cache):
    loaded = cache.get("tiny-llama", "fp32")
    before = cache.models.used_mb()
    batch = CausalBatch(loaded, (256, False), capacity=4)
    loaded.batches.by_key[(256, False)] = batch
    request = ask("tiny-llama", text=TEXTS[1], max_new_tokens=3)
    from engine.platform.measure import PeakMemory
    from engine.runtime.batching import Row
    from engine.runtime.decoding import Decoding, encode_prompt

    decoding = Decoding(loaded, request, encode_prompt(loaded, request), time.perf_counter())
    batch.add(
        Row(decoding, deliver=lambda item: None, cancelled=lambda: False, memory=PeakMemory(loaded.device), queue_s=0)
    )
    batch.join_step(0)
    assert batch.memory_bytes() == planned_bytes(loaded, (256, False), 4) > 0
    assert cache.models.used_mb() == pytest.approx(before + batch.memory_bytes() / 2**20)


def test_many_users_at_once_all_get_answers(cache):
    """More requests than a batch holds: the rest wait their turn, none fails, each stream is its own."""
    requests = [ask("tiny-llama", text=TEXTS[i % 4], max_new_tokens=5 + i % 3) for i in range(20)]
    requests = [replace(r, options=replace(r.options, seed=i)) for i, r in enumerate(requests)]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda r: run(r, cache), requests))
    assert all(isinstance(r, Result) and r.metrics.new_tokens >= 1 for r in results)
    assert max(r.metrics.batch_size for r in results) <= cache.max_batch


def test_a_measurement_holds_the_engine_alone(cache):
    """Work run `alone` (the Lab's sweep, a comparison's runs): requests submitted meanwhile wait."""
    run(ask("tiny-llama", max_new_tokens=1), cache)  # loaded: the request below only waits for the engine
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(cache.runner.call, lambda _: release.wait(), True)
        time.sleep(0.2)
        waiting = pool.submit(run, ask("tiny-llama", max_new_tokens=3), cache)
        time.sleep(0.5)
        assert not waiting.done() and cache.runner.waiting() == 1
        release.set()
        assert held.result(timeout=10) is True
        assert waiting.result(timeout=30).metrics.queue_ms > 0


def test_a_shorter_request_joins_a_batch_of_a_longer_bucket(cache):
    """Requests of different length buckets share one batch (and its steps) when they can."""
    short = ask("tiny-llama", text=TEXTS[0], max_new_tokens=10, precision="fp32")  # bucket 256
    long = ask("tiny-llama", text=TEXTS[3], max_new_tokens=300, precision="fp32")  # bucket 512
    alone = [run(r, cache) for r in (long, short)]
    in_batch = together(cache, [long, short])
    assert [r.token_ids for r in in_batch] == [r.token_ids for r in alone]
    assert in_batch[1].metrics.batch_size == 2  # the short one decoded beside the long one throughout


def test_a_fault_in_the_scheduler_fails_requests_instead_of_hanging_them(cache, monkeypatch):
    from engine.runtime.scheduler import Scheduler

    run(ask("tiny-llama", max_new_tokens=1), cache)
    monkeypatch.setattr(Scheduler, "admit", lambda self, busy: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run(ask("tiny-llama", max_new_tokens=3), cache)
    monkeypatch.undo()
    assert run(ask("tiny-llama", max_new_tokens=3), cache).metrics.new_tokens >= 1  # a new thread serves


def test_a_model_loads_while_the_engine_thread_goes_on_decoding(cache, monkeypatch):
    """Loading a second model (another tab's) does not stop a running stream: the load runs off the
    engine thread, which keeps stepping meanwhile; the load's progress reaches the caller's thread."""
    import engine.runtime.engine as engine_module

    long = ask("tiny-llama", text=TEXTS[1], max_new_tokens=400, precision="fp32")
    events = stream_request(long, cache)
    chunks: list[Chunk] = [next(e for e in events if isinstance(e, Chunk))]
    reader = threading.Thread(target=lambda: chunks.extend(e for e in events if isinstance(e, Chunk)))
    reader.start()
    real_load, seen_while_loading = engine_module.load_model, []

    def load_while_watching(spec, precision, device, progress=None):
        before = len(chunks)
        seen_while_loading.append(wait_until(lambda: len(chunks) >= before + 3, timeout=30))
        progress(0.5, "halfway")
        return real_load(spec, precision, device, progress)

    monkeypatch.setattr(engine_module, "load_model", load_while_watching)
    reports: list[tuple[str, str]] = []
    cache.get("tiny-bart", "fp32", lambda _, message: reports.append((threading.current_thread().name, message)))
    reader.join(timeout=60)
    assert seen_while_loading == [True]  # the stream got tokens while the load ran
    assert ("MainThread", "halfway") in reports  # reported in the caller's thread
    assert all(name == "MainThread" for name, _ in reports)


def test_work_run_aside_raises_in_the_caller_and_its_thread_ends():
    """A load that fails fails in the caller's thread; the thread it ran on ends with it (its OpenMP
    team with it: engine.runtime.aside)."""
    from engine.runtime.aside import run_aside

    threads: list[threading.Thread] = []

    def unreadable(report):
        threads.append(threading.current_thread())
        raise ValueError("no such file")

    with pytest.raises(ValueError, match="no such file"):
        run_aside(unreadable)
    threads[0].join(timeout=5)
    assert threads[0] is not threading.current_thread() and not threads[0].is_alive()
