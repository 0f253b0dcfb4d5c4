"""Decode steps compiled ahead of time and saved (engine.runtime.saved_steps): a later process loads
a step instead of compiling it, and decodes the same tokens; a file that does not load is compiled
anew; a step's file is named by everything it depends on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from test_engine import ask

from engine import Engine, WarmUp, run
from engine.attention.choice import DENSE
from engine.runtime import saved_steps
from engine.runtime.kv_cache import RowCache
from engine.runtime.step import bucket_for, decode_step, step_key

# A fresh process: the step for this request, compiled or loaded, then the request through it
_LATER_PROCESS = """
import json, sys, torch
from test_engine import ask
from engine import Engine, WarmUp, run
from engine.attention.choice import DENSE
from engine.runtime.step import bucket_for, step_key
engine = Engine(budget_mb=10_000, device=torch.device("cpu"))
compiled = engine.get("tiny-llama", "fp32").compiled
compiled.compile_now(64)
step = compiled.step(step_key(bucket_for(64), DENSE), 1)
result = run(ask("tiny-llama", precision="fp32", max_new_tokens=12), engine)
print(json.dumps({"loaded": step.loaded, "path": result.metrics.decode_path, "tokens": result.token_ids}))
"""


def test_a_step_compiled_here_is_loaded_by_the_next_process_and_decodes_the_eager_tokens(tiny_env):
    engine = Engine(budget_mb=10_000, device=torch.device("cpu"))
    request = ask("tiny-llama", precision="fp32", max_new_tokens=12)
    eager = run(request, engine)
    assert eager.metrics.decode_path == "eager"
    compiled = engine.get("tiny-llama", "fp32").compiled
    compiled.compile_now(64)  # compiled and saved (or loaded, saved by an earlier run of the tests)
    assert not compiled.failures and not compiled.failed_variants
    tests = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _LATER_PROCESS], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decoding eagerly" not in done.stderr  # the loaded step ran, not the eager fallback
    later = json.loads(done.stdout.strip().splitlines()[-1])
    assert later == {"loaded": True, "path": "compiled", "tokens": list(eager.token_ids)}


def test_a_saved_step_that_does_not_load_is_removed(tmp_path, caplog):
    broken = tmp_path / "cut-short.step"
    broken.write_bytes(b"\x80\x04 not a whole step")
    assert saved_steps.load(broken, ()) is None
    assert not broken.exists()  # compiling anew writes it again
    assert "does not serve" in caplog.text
    assert saved_steps.load(tmp_path / "never-saved.step", ()) is None


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def test_a_saved_step_whose_guards_fail_here_is_removed(tmp_path, caplog):
    """A step traced under another global state (here torch's thread count) would fail its guards on
    every call: loading it says which guard fails and removes it, so that it is compiled anew."""
    threads, path = torch.get_num_threads(), tmp_path / "other-state.step"
    with torch.inference_mode():
        x = torch.ones(4)
    compiler = torch.compile(_double, fullgraph=True, options={"guard_filter_fn": saved_steps.portable_guards})
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        with torch.inference_mode():  # as every step is traced (engine.runtime.compile)
            saved_steps.save(compiler.aot_compile(((x,), {})), path)
        assert saved_steps.load(path, (x,)) is not None  # where it was traced, it serves
    finally:
        torch.set_num_threads(threads)
    assert saved_steps.load(path, (x,)) is None
    assert not path.exists()
    assert "its guards fail here: GLOBAL_STATE" in caplog.text


def test_a_steps_file_is_named_by_the_model_and_the_step():
    key = repr((step_key(bucket_for(64), DENSE), 1))
    here = saved_steps.step_file("embedded:a.gguf gguf-q8 cpu {}", key)
    assert here == saved_steps.step_file("embedded:a.gguf gguf-q8 cpu {}", key)
    assert here != saved_steps.step_file("embedded:a.gguf gguf cpu {}", key)
    assert here != saved_steps.step_file("embedded:a.gguf gguf-q8 cpu {}", repr((step_key(512, DENSE), 1)))
    assert here.parent.name == "studio-steps"


def test_a_saved_step_whose_guards_fail_decodes_eagerly_instead_of_raising(tiny_env, caplog):
    """A saved step is traced under one global state; where it changes (here torch's thread count),
    torch would raise rather than compile again: the step decodes eagerly and says so."""
    loaded = Engine(budget_mb=10_000, device=torch.device("cpu")).get("tiny-llama", "fp32")
    loaded.compiled.compile_now(64)
    step = loaded.compiled.step(step_key(bucket_for(64), DENSE), 1)
    assert step is not None
    model, threads = loaded.model, torch.get_num_threads()
    cache = RowCache(model.config.num_hidden_layers, loaded.compiled.capacity, bucket_for(64))
    with torch.inference_mode():
        cache.prefill(0)
        ids = torch.tensor([[5, 6, 7]])
        model(input_ids=ids, position_ids=torch.arange(3)[None], past_key_values=cache, use_cache=True)
        token, position = torch.tensor([[8]]), torch.tensor([3])
        before = step.run(token, position, cache)
        torch.set_num_threads(1 if threads > 1 else 2)
        try:
            after = step.run(token, position, cache)
        finally:
            torch.set_num_threads(threads)
        cache.decode(position, cache.length)
        eager = decode_step(model, token, position, cache, DENSE)
    assert "guards fail" in caplog.text and "decoding eagerly" in caplog.text
    torch.testing.assert_close(after, eager)
    torch.testing.assert_close(before, eager, atol=1e-4, rtol=1e-4)


def test_a_warm_up_loads_the_saved_step_so_the_first_request_decodes_compiled(tiny_env, studio_env, caplog):
    Engine(budget_mb=10_000, device=torch.device("cpu")).get("tiny-llama", "fp32").compiled.compile_now(64)
    studio_env("STUDIO_COMPILE_DECODE", "1")  # as the app runs (the tests compile only when they ask)
    engine = Engine(budget_mb=10_000, device=torch.device("cpu"))  # as the app after set-up
    assert WarmUp("tiny-llama", "fp32", engine).run().phase == "ready"
    first = run(ask("tiny-llama", precision="fp32", max_new_tokens=12), engine)
    assert first.metrics.decode_path == "compiled" and "decoding eagerly" not in caplog.text
    compiled = engine.get("tiny-llama", "fp32").compiled
    assert not compiled.load_saved(64, batch=8)  # never saved: nothing is compiled here (a request starts it)
    assert compiled.compiling() == 0
