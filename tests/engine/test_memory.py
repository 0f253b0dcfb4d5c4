"""Out of memory, at load and during a request: a clear error naming the model, the precision and a
smaller choice; the cache frees what it can; the next request works. The allocations that fail are
real: a tensor no machine can hold, asked of torch's own allocator."""

from __future__ import annotations

import pytest
import torch
from test_batching import wait_until
from test_engine import ask

from engine import Engine, Result, run
from engine.models.out_of_memory import smaller_precisions
from engine.platform.errors import OutOfMemoryError


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
