"""The untested GPU paths fall back once, on their first error, to the paths the tests run, and say
so (engine.platform.fallbacks). No GPU here: each failure is forced, by a real missing CUDA where the path
needs one, else by making the path raise as an unsupported GPU would."""

from __future__ import annotations

import pytest
import torch
from test_engine import ask

from engine import Engine, run
from engine.models.precision import resolve_device, resolve_precision
from engine.models.registry import get_spec
from engine.platform.fallbacks import CUDA_GRAPHS, FALLBACKS
from engine.runtime.step_variants import CPP_WRAPPER, PLAIN, SAVED, step_variants

PROMPT = "the quick brown fox jumps over the lazy dog " * 12


@pytest.fixture(autouse=True)
def no_fallbacks_yet():
    FALLBACKS.clear()
    yield
    FALLBACKS.clear()


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def test_flexattention_failing_hands_over_to_the_blocked_kernel(cache, studio_env, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("no Triton for this GPU")

    request = ask("tiny-llama", precision="fp32", attention="sparse", window=16, sinks=2, text=PROMPT)
    blocked = run(request, cache)
    studio_env("STUDIO_SPARSE_KERNEL", "flex")
    monkeypatch.setattr("engine.attention.interface.flex_sparse_attention", unsupported)
    fell_back = run(request, cache)
    assert fell_back.metrics.fallbacks == [
        "FlexAttention failed (RuntimeError: no Triton for this GPU); the blocked kernel instead"
    ]
    assert fell_back.token_ids == blocked.token_ids and fell_back.metrics.density == blocked.metrics.density
    assert blocked.metrics.fallbacks is None


def test_cuda_graphs_failing_compile_the_step_without_them(cache, monkeypatch):
    loaded = cache.get("tiny-llama", "fp32")
    compile_for_real = torch.compile

    def no_graphs(fn, **kwargs):
        if kwargs.get("mode") == "reduce-overhead":
            raise RuntimeError("CUDA graphs need a GPU")
        return compile_for_real(fn, **kwargs)

    monkeypatch.setattr(
        "engine.runtime.compile.step_variants", lambda device: step_variants(torch.device("cuda"))
    )  # as on CUDA
    monkeypatch.setattr("engine.runtime.compile.torch.compile", no_graphs)
    loaded.compiled.compile_now(64)
    assert not loaded.compiled.failures and len(loaded.compiled.compile_seconds) == 1
    assert FALLBACKS.active() == [
        f"{CUDA_GRAPHS} failed (RuntimeError: CUDA graphs need a GPU); compiled steps without CUDA graphs instead"
    ]
    assert [v.mode for v in step_variants(torch.device("cuda"))] == [None]  # for good, in this process


def test_a_failing_cpp_wrapper_compiles_the_models_steps_with_pythons(cache, monkeypatch):
    loaded = cache.get("tiny-llama", "fp32")
    compile_for_real = torch.compile
    asked = []

    def no_cpp_wrapper(fn, **kwargs):
        asked.append(kwargs["options"].get("cpp_wrapper", False))
        if asked[-1]:
            raise RuntimeError("no C++ wrapper today")
        return compile_for_real(fn, **kwargs)

    monkeypatch.setattr("engine.runtime.compile.torch.compile", no_cpp_wrapper)
    monkeypatch.setattr("engine.runtime.saved_steps.load", lambda path, inputs: None)  # none saved by an earlier test
    loaded.compiled.compile_now(64)
    assert asked == [True, True, False] and not loaded.compiled.failures  # saved, C++ in-process, Python
    assert loaded.compiled.failed_variants == {SAVED.name, CPP_WRAPPER.name}
    loaded.compiled.compile_now(64, batch=2)  # this model's next step goes straight to the Python wrapper
    assert asked == [True, True, False, False] and len(loaded.compiled.compile_seconds) == 2
    assert FALLBACKS.active() == []  # a compiler bug one model's graph meets; other models still try it
    assert step_variants(torch.device("cpu")) == [SAVED, CPP_WRAPPER, PLAIN]


def test_a_load_on_cuda_that_fails_loads_the_tested_way(tiny_env):
    """Here CUDA really is missing: bitsandbytes goes to the CPU at its precision, fp16 to the CPU at
    what `auto` is there."""
    cache = Engine(budget_mb=10_000, device=torch.device("cuda"))
    int8 = cache.get("tiny-llama", "int8")
    assert (int8.device.type, int8.precision) == ("cpu", "int8")
    fp16 = cache.get("tiny-llama", "fp16")
    assert (fp16.device.type, fp16.precision) == (
        "cpu",
        resolve_precision("auto", torch.device("cpu"), get_spec("tiny-llama")),
    )
    active = FALLBACKS.active()
    assert [a.split(" failed")[0] for a in active] == ["bitsandbytes on CUDA", "fp16 on CUDA"]
    assert active[0].endswith("; int8 with bitsandbytes on the CPU instead")


def test_zero_gpu_hardware_runs_on_the_cpu(monkeypatch):
    """On ZeroGPU the GPU exists only inside a `@spaces.GPU` call's own process; the engine's thread
    never is one, so it takes the CPU where CUDA seems present."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    assert resolve_device().type == "cuda"
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert resolve_device().type == "cpu"
