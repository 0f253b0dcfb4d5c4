"""Out of memory, at load and during a request: a clear error naming the model, the precision and a
smaller choice; the cache frees what it can; the next request works. The allocations that fail are
real: a tensor no machine can hold, asked of torch's own allocator. And the bounds on what a
long-running engine holds: compiled steps, batch caches, malloc's free pages."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from test_batching import TEXTS, wait_until
from test_engine import ask

from engine import Chunk, Engine, Result, run, stream_request
from engine.attention.choice import DENSE
from engine.models.out_of_memory import smaller_precisions
from engine.platform.errors import OutOfMemoryError
from engine.platform.heap import give_back, heap_mb


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def too_big(*args, **kwargs):
    return torch.empty(2**42)  # 16 TiB: the CPU allocator refuses ("can't allocate memory")


def test_out_of_memory_at_load_frees_the_other_models_and_names_a_smaller_choice(cache, monkeypatch):
    cache.get("tiny-llama", "bf16")
    monkeypatch.setattr("engine.models.loader.quantize_after_load", too_big)
    with pytest.raises(OutOfMemoryError, match="loading tiny-llama at fp32 on cpu: try fp16") as caught:
        cache.get("tiny-llama", "fp32")
    assert "next request can go ahead" in str(caught.value)
    assert cache.models.loaded() == []  # it dropped the other model to try again, then said so
    monkeypatch.undo()
    assert isinstance(run(ask("tiny-llama", precision="fp32"), cache), Result)


def test_out_of_memory_during_a_request_ends_it_clearly_and_the_next_one_runs(cache, monkeypatch):
    loaded = cache.get("tiny-llama", "fp32")
    forward, calls = loaded.model.forward, []

    def second_call_fails(*args, **kwargs):  # the prompt runs, the first decode step does not fit
        calls.append(1)
        return too_big() if len(calls) == 2 else forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", second_call_fails)
    with pytest.raises(OutOfMemoryError, match="decoding 1 requests of tiny-llama at fp32 on cpu: try fp16"):
        run(ask("tiny-llama", precision="fp32", max_new_tokens=4), cache)
    assert wait_until(lambda: not loaded.batches.by_key)  # its batch and cache are gone
    assert isinstance(run(ask("tiny-llama", precision="fp32", max_new_tokens=4), cache), Result)


def test_smaller_precisions_fit_more_weights():
    cpu = torch.device("cpu")
    assert smaller_precisions("fp32", cpu)[:2] == ["fp16", "bf16"]
    assert smaller_precisions("bf16", cpu)[0] in ("int8", "int8-wo")
    assert smaller_precisions("int4-wo", cpu) == []


class Starts:
    """A background that records the compiles it is asked to start, and runs none."""

    def __init__(self):
        self.names: list[str] = []

    def start(self, work, name: str) -> None:
        self.names.append(name)


def test_compiles_stop_at_the_bound_and_other_shapes_decode_eagerly(tiny_env, studio_env):
    studio_env("STUDIO_COMPILE_DECODE", "1")
    studio_env("STUDIO_MAX_COMPILED_STEPS", "2")
    engine = Engine(budget_mb=10_000, device=torch.device("cpu"))
    engine.background = starts = Starts()
    compiled = engine.get("tiny-llama", "fp32").compiled
    for bucket, rows in [(256, 1), (256, 2), (512, 1), (1024, 4), (256, 1)]:
        assert compiled.step((bucket, DENSE), rows) is None  # nothing compiled yet: eager
    assert starts.names == ["compile-256-1x1", "compile-256-2x1"]  # bucket, rows x tokens a row
    assert (compiled.compiling(), compiled.kept()) == (2, 0)


def test_a_retired_batch_frees_its_cache_at_once(cache):
    """Nothing but the batch holds its KV cache, no reference cycle either: with Python's cyclic
    collector off, the cache's tensors go as the batch retires (a cycle kept each one resident until
    the next full collection, rare in a long-running process)."""
    loaded = cache.get("tiny-llama", "fp32")
    gc.disable()
    try:
        events = stream_request(ask("tiny-llama", text=TEXTS[1], max_new_tokens=400, precision="fp32"), cache)
        assert next(e for e in events if isinstance(e, Chunk)).text
        keys = weakref.ref(next(iter(loaded.batches.by_key.values())).cache.row_layers[0].keys)
        events.close()  # the request ends; its batch, now empty, retires
        assert wait_until(lambda: not loaded.batches.by_key)
        assert wait_until(lambda: keys() is None)
    finally:
        gc.enable()


@pytest.mark.skipif(heap_mb() is None, reason="reads glibc's malloc")
def test_the_heap_counts_what_malloc_holds():
    before = heap_mb()
    block = torch.ones(2**24, dtype=torch.float32)  # 64 MB from malloc, whatever the default dtype
    assert heap_mb() - before >= 63
    del block
    give_back()
    assert heap_mb() - before < 32
