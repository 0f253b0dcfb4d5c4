"""The engine end to end on tiny local models, one per family, at every CPU precision."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace

import pytest
import torch

from engine import (
    AttentionConfigError,
    Chunk,
    Comparison,
    ContextLengthError,
    Engine,
    GenerationRequest,
    InputError,
    Message,
    ModelLoadError,
    PrecisionError,
    Result,
    RunOptions,
    SparseSettings,
    StudioError,
    TimeLimitError,
    UnknownModelError,
    precheck,
    run,
    stream_request,
)
from engine.api.options import OPTION_BY_NAME
from engine.api.report import metrics_line
from engine.attention.choice import AttentionChoice
from engine.models.embedded import BUILDING

GENERATORS = ("tiny-llama", "tiny-marian", "tiny-bart", "tiny-t5")
CPU_PRECISIONS = ("fp32", "fp16", "bf16", "int8", "nf4", "fp4", "int8-wo", "int4-wo")


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def ask(model, sparse: SparseSettings | None = None, **kw) -> GenerationRequest:
    """A request; keyword arguments that name a run option (and `sparse`, spelled out) go to its options."""
    kw = {"text": "hello world the quick brown fox", "max_new_tokens": 6, **kw, **(vars(sparse) if sparse else {})}
    options = RunOptions(model=model, **{k: v for k, v in kw.items() if k in OPTION_BY_NAME})
    return GenerationRequest(options, **{k: v for k, v in kw.items() if k not in OPTION_BY_NAME})


@pytest.mark.parametrize("model", GENERATORS)
@pytest.mark.parametrize("precision", CPU_PRECISIONS)
def test_every_family_generates_at_every_cpu_precision(cache, model, precision):
    result = run(ask(model, precision=precision), cache)
    assert isinstance(result, Result)
    m = result.metrics
    assert m.precision == precision and m.device == "cpu"
    assert m.input_tokens > 0 and m.new_tokens == len(result.token_ids) <= 6
    assert 0 < m.prefill_ms <= m.total_ms and m.ttft_ms <= m.total_ms
    assert m.peak_memory_mb > 0 and m.model_memory_mb > 0


def test_quantized_footprints_are_smaller(cache):
    sizes = {
        p: cache.get("tiny-llama", p).footprint_bytes
        for p in ("fp32", "fp16", "int8", "nf4", "bf16", "int8-wo", "int4-wo")
    }
    assert sizes["fp16"] < sizes["fp32"]
    assert sizes["nf4"] < sizes["fp32"] and sizes["int8"] < sizes["fp32"]
    # torchao's tensors are counted by what they store, not by their logical (bf16) size
    assert sizes["int4-wo"] < sizes["int8-wo"] < sizes["bf16"]


def test_every_precision_in_the_menu_says_what_runs_it():
    from engine.models.precision_menu import PRECISION_CHOICES

    notes = OPTION_BY_NAME["precision"].choice_notes
    assert set(notes) == set(OPTION_BY_NAME["precision"].choices) == {c.name for c in PRECISION_CHOICES}
    assert "bitsandbytes" in notes["nf4"] and "torchao" in notes["int4-wo"]


def test_streaming_chunks_add_up_to_the_result(cache):
    events = list(stream_request(ask("tiny-llama", max_new_tokens=12), cache))
    *chunks, final = events
    assert all(isinstance(c, Chunk) for c in chunks)
    assert "".join(c.text for c in chunks) == final.text
    assert final.metrics.new_tokens == 12 and final.finish_reason == "length"
    assert final.metrics.decode_tokens_per_s > 0


def test_greedy_is_reproducible_and_seeded_sampling_too(cache):
    assert run(ask("tiny-llama"), cache).token_ids == run(ask("tiny-llama"), cache).token_ids
    sampled = ask("tiny-llama", temperature=1.0, seed=7, max_new_tokens=10)
    assert run(sampled, cache).token_ids == run(sampled, cache).token_ids
    other_seed = [run(ask("tiny-llama", temperature=1.0, seed=s, max_new_tokens=10), cache).token_ids for s in (8, 9)]
    assert any(ids != run(sampled, cache).token_ids for ids in other_seed)  # the seed, not greedy, decides
    top_1 = [
        run(ask("tiny-llama", temperature=1.0, seed=s, top_k=1, max_new_tokens=10), cache).token_ids for s in (7, 8)
    ]
    assert top_1[0] == top_1[1] == run(ask("tiny-llama", max_new_tokens=10), cache).token_ids  # top-1 is greedy


def test_chat_messages_use_the_template(cache):
    req = ask("tiny-llama", text=None, messages=(Message("system", "be brief"), Message("user", "hello")))
    result = run(req, cache)
    assert result.metrics.input_tokens > 4


def test_stop_string_cuts_output(cache):
    full = run(ask("tiny-llama", max_new_tokens=12), cache).text
    stop = full[3:5]
    assert stop, full
    cut = run(ask("tiny-llama", max_new_tokens=12, stop=(stop,)), cache)
    assert stop not in cut.text and full.startswith(cut.text) and cut.finish_reason == "stop"


def test_time_limit_stops_decoding_and_says_so(cache):
    result = run(ask("tiny-llama", max_new_tokens=50, time_limit_s=1e-9), cache)
    assert result.finish_reason == "time_limit" and len(result.token_ids) == 1


def test_sparse_with_covering_window_matches_dense(cache):
    dense = run(ask("tiny-llama", max_new_tokens=10), cache)
    sparse = run(ask("tiny-llama", max_new_tokens=10, attention="sparse", sparse=SparseSettings(window=512)), cache)
    assert dense.token_ids == sparse.token_ids


@pytest.mark.parametrize("model", GENERATORS)
def test_compare_mode_returns_both_runs(cache, model):
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    req = ask(model, text=text, attention="compare", sparse=SparseSettings(window=16, sinks=2, block_size=16))
    comparison = run(req, cache)
    assert isinstance(comparison, Comparison) and comparison.axis == "attention"
    assert comparison.a.metrics.attention == "dense" and comparison.b.metrics.attention == "sparse"
    assert (comparison.a_label, comparison.b_label) == ("dense", "sparse")
    assert 0.0 <= comparison.token_agreement <= 1.0
    for timing in (comparison.prefill, comparison.ttft, comparison.total):
        assert timing.low <= timing.ratio <= timing.high and timing.verdict in ("faster", "slower", "same")
        assert timing.trials >= 3 and len(timing.a) == len(timing.b) == timing.trials
    assert comparison.density < 1.0  # the sparse run computed fewer query-key pairs
    q = comparison.quality
    if not comparison.a.token_ids:  # a random tiny model may stop at once: nothing to score
        assert q is None and "no tokens" in comparison.quality_note
        return
    assert q.tokens == len(comparison.a.token_ids) and q.kl_mean >= 0 and 0 <= q.top1_agreement <= 1
    assert q.perplexity_a > 0 and q.perplexity_b > 0


@pytest.mark.parametrize(
    ("compare", "compare_with"), [("attention", "dense"), ("precision", "fp32"), ("model", "tiny-llama")]
)
def test_identical_settings_cost_no_quality(cache, compare, compare_with):
    """An A/A experiment: B scores A's tokens exactly as A does."""
    req = ask("tiny-llama", max_new_tokens=8, precision="fp32", compare=compare, compare_with=compare_with, trials=2)
    comparison = run(req, cache)
    assert comparison.quality.kl_mean == 0 and comparison.quality.top1_agreement == 1
    assert comparison.quality.perplexity_a == comparison.quality.perplexity_b
    assert comparison.token_agreement == 1 and comparison.first_divergence is None
    assert comparison.a_label.endswith("(A)") and comparison.b_label.endswith("(B)")
    assert comparison.total.trials == 2


def test_runs_measured_alone_say_what_other_work_took_and_others_do_not(cache):
    """A comparison's runs are scheduled alone, and each reports the CPU other work took from the moment
    the engine started it (its wait behind other users' requests excluded); an ordinary run reports none."""
    comparison = run(ask("tiny-llama", max_new_tokens=4, compare="attention", compare_with="dense", trials=2), cache)
    for side in (comparison.a, comparison.b):
        assert side.metrics.other_work_ms is not None and side.metrics.other_work_ms >= 0
    assert len(comparison.other_work_ms) == comparison.total.trials == 2
    assert run(ask("tiny-llama", max_new_tokens=4), cache).metrics.other_work_ms is None


def test_precision_comparison_measures_a_quality_cost(cache):
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 4)
    comparison = run(ask("tiny-llama", text=text, max_new_tokens=8, precision="fp32", compare="precision",
                         compare_with="bf16", trials=1), cache)  # fmt: skip
    assert (comparison.a.metrics.precision, comparison.b.metrics.precision) == ("fp32", "bf16")
    assert comparison.quality.kl_mean > 0 and comparison.total.noise == 0.10  # one trial measures no noise


def test_seq2seq_quality_is_teacher_forced_too(cache):
    comparison = run(
        ask("tiny-t5", max_new_tokens=5, precision="fp32", compare="precision", compare_with="fp32", trials=1), cache
    )
    assert comparison.quality.kl_mean == 0 and comparison.quality.tokens == len(comparison.a.token_ids)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compare": "precision"}, "needs compare_with"),
        ({"compare": "precision", "compare_with": "fp8"}, "Unknown precision 'fp8'"),
        ({"compare": "attention", "compare_with": "local_global"}, "cannot serve causal"),
        ({"compare": "attention", "compare_with": "fast"}, "dense, sparse or a pattern"),
        ({"attention": "compare", "compare": "precision", "compare_with": "bf16"}, "already compares"),
        ({"compare": "model", "compare_with": "tiny-llama-classifier"}, "only score labels"),
        ({"compare": "model", "compare_with": "nope"}, "Unknown model"),
    ],
)
def test_comparison_settings_are_checked_up_front(cache, options, message):
    with pytest.raises(StudioError, match=message):
        run(ask("tiny-llama", **options), cache)


def test_sparse_changes_what_a_small_window_sees(cache):
    text = " ".join(["the quick brown fox jumps over the lazy dog hello world"] * 10)
    dense = run(ask("tiny-llama", text=text, max_new_tokens=1), cache)
    sparse = run(
        ask("tiny-llama", text=text, max_new_tokens=1, attention="sparse", sparse=SparseSettings(4, 1, 8)), cache
    )
    assert sparse.metrics.density < 0.2
    assert dense.metrics.density == 1.0


def test_named_pattern_per_request_and_a_clear_error_for_the_wrong_kind(cache):
    text = " ".join(["the quick brown fox jumps over the lazy dog hello world"] * 20)
    sliding = SparseSettings(window=16, sinks=2, block_size=16)
    window_only = run(ask("tiny-llama", text=text, max_new_tokens=2, attention="sparse", sparse=sliding), cache)
    bigbird = replace(sliding, pattern="bigbird_random")
    random_blocks = run(ask("tiny-llama", text=text, max_new_tokens=2, attention="sparse", sparse=bigbird), cache)
    assert window_only.metrics.density < random_blocks.metrics.density < 1  # the random blocks add keys
    encoder_pattern = replace(sliding, pattern="local_global")
    with pytest.raises(AttentionConfigError, match="cannot serve causal"):
        run(ask("tiny-llama", attention="sparse", sparse=encoder_pattern), cache)


def test_concurrent_requests_get_their_own_mode(cache):
    """Two threads on one model, one dense and one sparse, each sees the mode it asked for."""
    text = " ".join(["the quick brown fox"] * 30)
    settings = SparseSettings(window=8, sinks=1, block_size=8)
    expected = {
        mode: run(ask("tiny-llama", text=text, attention=mode, sparse=settings), cache) for mode in ("dense", "sparse")
    }
    results, barrier = {}, threading.Barrier(2)

    def worker(mode):
        barrier.wait()
        for _ in range(3):
            results.setdefault(mode, []).append(
                run(ask("tiny-llama", text=text, attention=mode, sparse=settings), cache)
            )

    threads = [threading.Thread(target=worker, args=(m,)) for m in ("dense", "sparse")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mode in ("dense", "sparse"):
        for r in results[mode]:
            assert r.token_ids == expected[mode].token_ids
            assert r.metrics.density == expected[mode].metrics.density


def test_the_choice_travels_as_the_forward_argument_and_none_is_dense():
    """No thread or process state picks the kernel: a forward without `studio_choice` is dense SDPA,
    and the same model with a sparse choice computes fewer pairs."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from engine.attention.choice import AttentionStats
    from engine.attention.interface import register

    register()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)  # fmt: skip
    with BUILDING:  # as every build: transformers sets torch's default dtype for the process meanwhile
        studio = LlamaForCausalLM._from_config(config, attn_implementation="studio").eval()
        sdpa = LlamaForCausalLM._from_config(
            copy.deepcopy(config), attn_implementation="sdpa"
        ).eval()  # sets its config's
    sdpa.load_state_dict(studio.state_dict())
    ids = torch.randint(0, 64, (1, 100))
    stats = AttentionStats()
    sparse = AttentionChoice("sparse", SparseSettings(window=8, sinks=1, block_size=8), stats)
    with torch.inference_mode():
        torch.testing.assert_close(studio(input_ids=ids).logits, sdpa(input_ids=ids).logits)
        studio(input_ids=ids, past_key_values=DynamicCache(config=config), use_cache=True, studio_choice=sparse)
    assert 0 < stats.density < 0.5


def test_classifier_head_scores(cache):
    req = ask("tiny-llama-classifier", candidates=("POSITIVE", "NEGATIVE"))
    result = run(req, cache)
    assert set(result.scores) == {"POSITIVE", "NEGATIVE"}
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert result.text == max(result.scores, key=result.scores.get)


def test_causal_lm_scores_labels_by_likelihood(cache):
    req = ask("tiny-llama", candidates=("positive", "negative", "neutral code"))
    result = run(req, cache)
    assert sum(result.scores.values()) == pytest.approx(1.0) and result.finish_reason == "scored"
    compare = run(ask("tiny-llama", candidates=("positive", "negative"), attention="compare", trials=2), cache)
    assert compare.quality.tv_distance is not None and compare.quality.perplexity_a is None
    assert compare.quality.tokens == 2 and compare.decode is None  # scoring generates nothing


def test_model_cache_loads_once_under_concurrency(cache):
    got, barrier = [], threading.Barrier(4)

    def load():
        barrier.wait()
        got.append(cache.get("tiny-llama", "fp32"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1


def test_only_a_build_in_another_dtype_waits_for_a_compile(cache):
    """A compile holds BUILDING for minutes (both set torch's process-wide default dtype): an fp32
    load, which leaves the default as it is, does not wait for it; a bf16 load does."""
    loads = {p: threading.Thread(target=cache.get, args=("tiny-llama", p), daemon=True) for p in ("fp32", "bf16")}
    with BUILDING:  # as a compile in the background holds it
        for thread in loads.values():
            thread.start()
        loads["fp32"].join(timeout=60)
        assert not loads["fp32"].is_alive()
        assert loads["bf16"].is_alive()  # waiting for the lock
    loads["bf16"].join(timeout=60)
    assert cache.models.peek("tiny-llama", "bf16") is not None


def test_model_cache_evicts_least_recently_used(tiny_env):
    small = Engine(budget_mb=0.0001, device=torch.device("cpu"))
    small.get("tiny-llama", "fp32")
    small.get("tiny-bart", "fp32")
    assert small.models.loaded() == [("tiny-bart", "fp32")]


@pytest.mark.parametrize(
    "request_kwargs,error,text",
    [
        ({"text": "   "}, InputError, "empty"),
        ({"text": None}, InputError, "exactly one"),
        ({"max_new_tokens": 0}, InputError, "max_new_tokens must be between 1 and"),
        ({"model": "no-such-model"}, UnknownModelError, "Unknown model"),
        ({"precision": "fp8"}, PrecisionError, "Unknown precision"),
        ({"max_new_tokens": 5000}, InputError, "max_new_tokens must be between 1 and 4096"),
        ({"attention": "magic"}, InputError, "Unknown attention"),
        ({"sparse": SparseSettings(window=0)}, AttentionConfigError, "window must be between 1"),
        ({"temperature": -0.5}, InputError, "temperature must be between 0"),
        ({"top_p": 0.0}, InputError, "top_p must be between"),
        ({"seed": 1.5}, InputError, "seed must be a whole number"),
        ({"pattern": "nope"}, AttentionConfigError, "Unknown pattern"),
        ({"candidates": ("a", "b"), "model": "tiny-marian"}, InputError, "cannot score labels"),
        ({"model": "tiny-llama-classifier"}, InputError, "only score labels"),
        ({"text": "hello " * 600}, ContextLengthError, "fits 512"),
        ({"candidates": ("only-one",)}, InputError, "two"),
        ({"candidates": tuple(f"label{i}" for i in range(21))}, InputError, "at most 20 candidate labels"),
        ({"candidates": ("yes", "no"), "text": "hello " * 200, "time_limit_s": 1e-6}, TimeLimitError, "time limit"),
        ({"time_limit_s": 0}, InputError, "positive"),
    ],
)
def test_clear_errors(cache, request_kwargs, error, text):
    kwargs = {"model": "tiny-llama", **request_kwargs}
    with pytest.raises(error, match=text):
        run(ask(**kwargs), cache)


def test_precheck_refuses_what_the_engine_would_without_running_it(cache):
    """The app's validators call it before a request queues: the same errors, the input's size once
    the model is loaded, and no torch work (a request that passes still has to run)."""
    with pytest.raises(InputError, match="empty"):
        precheck(ask("tiny-llama", text=" "), cache)
    precheck(ask("tiny-llama", text="hello " * 600), cache)  # the model is not loaded: its size is checked later
    run(ask("tiny-llama"), cache)
    with pytest.raises(ContextLengthError, match="fits 512"):
        precheck(ask("tiny-llama", text="hello " * 600), cache)
    precheck(ask("tiny-llama", text="hello " * 600, truncate=True), cache)


def test_truncation_is_reported(cache):
    result = run(ask("tiny-llama", text="hello " * 600, truncate=True), cache)
    assert result.truncated_tokens > 0
    assert result.metrics.input_tokens + 6 <= 512


def test_missing_local_model_and_offline_hub_errors(cache, monkeypatch, tmp_path):
    with pytest.raises(ModelLoadError, match="not a model directory"):
        run(ask(f"local:{tmp_path}"), cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        run(ask("hub:nobody-here/definitely-missing-model"), cache)


def test_stream_can_be_resumed_in_other_threads_and_contexts(cache):
    """Gradio resumes generators step by step in worker threads with fresh contexts."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    text = " ".join(["the quick brown fox"] * 30)
    req = ask("tiny-llama", text=text, attention="sparse", sparse=SparseSettings(8, 1, 8), max_new_tokens=8)
    expected = run(req, cache)
    iterator = stream_request(req, cache)
    events = []
    with ThreadPoolExecutor(2) as pool:
        while True:
            step = pool.submit(contextvars.Context().run, next, iterator, None)
            event = step.result()
            if event is None:
                break
            events.append(event)
    assert events[-1].token_ids == expected.token_ids
    assert events[-1].metrics.density == expected.metrics.density


@pytest.mark.parametrize(("precision", "attention"), [("fp32", "dense"), ("int4-wo", "dense"), ("fp32", "sparse")])
def test_decode_compiles_in_the_background_and_gives_the_same_tokens(cache, precision, attention, monkeypatch):
    """The first request of a length bucket decodes eagerly and starts the compile, which waits while
    any request is served; once it is ready the same greedy request runs compiled (static cache)
    and gives the same tokens. Sparse (a 16-key window, well inside the 256-token bucket) too."""
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    request = ask("tiny-llama", text=text, max_new_tokens=12, precision=precision, attention=attention, window=16)
    compiled_decode = cache.get("tiny-llama", precision).compiled
    compiled_decode.enabled = True  # the suite runs with STUDIO_COMPILE_DECODE=0
    monkeypatch.setattr("engine.runtime.saved_steps.load", lambda path, inputs: None)  # compiled, not loaded as saved
    eager = run(request, cache)
    assert eager.metrics.decode_path == "eager"
    with cache.in_flight.serving():  # another request in flight: the compiler gives way
        time.sleep(3)
        assert not compiled_decode.compile_seconds and not compiled_decode.failures
    deadline = time.monotonic() + 300
    while not compiled_decode.compile_seconds and not compiled_decode.failures and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not compiled_decode.failures and compiled_decode.compile_seconds
    compiled = run(request, cache)
    assert compiled.metrics.decode_path == "compiled" and compiled.token_ids == eager.token_ids
    # the compile is reported apart from the request's own time
    assert compiled.metrics.compile_s == next(iter(compiled_decode.compile_seconds.values())) > 0
    assert "compiled step" in metrics_line(compiled) and "(eager)" in metrics_line(eager)
    other = "sparse" if attention == "dense" else "dense"  # its own step: this one is not used for it
    assert (
        run(replace(request, options=replace(request.options, attention=other)), cache).metrics.decode_path == "eager"
    )
    assert run(ask("tiny-marian", max_new_tokens=4), cache).metrics.decode_path == "eager"


def test_requests_that_would_run_the_same_step_share_it():
    from engine.attention.choice import SparseSettings as Sparse
    from engine.runtime.compile import DENSE
    from engine.runtime.step import step_key

    sparse = AttentionChoice("sparse", Sparse(window=16, sinks=4))
    assert step_key(256, AttentionChoice("dense", Sparse(window=16))) == (256, DENSE)
    assert step_key(256, AttentionChoice("sparse", Sparse(window=512))) == (256, DENSE)  # keeps every key
    assert step_key(1024, AttentionChoice("sparse", Sparse(window=512))) != (1024, DENSE)
    assert step_key(256, sparse) == step_key(256, AttentionChoice("sparse", Sparse(window=16, sinks=4, block_size=8)))
    assert step_key(256, sparse) != step_key(256, AttentionChoice("sparse", Sparse(window=32, sinks=4)))


def test_a_requests_time_split_is_set_against_the_machines_measured_limits(cache, studio_env, tmp_path):
    """Decode: the weights once a step plus the row's keys and values, at the step rate; prefill: two
    FLOPs a parameter a token. This machine's limits join once measured (`python -m engine measure-machine`)."""
    from engine.platform.machine import machine_limits, measure_machine
    from engine.runtime.kv_cache import kv_bytes_per_position

    studio_env("STUDIO_CACHE", str(tmp_path))
    request = ask("tiny-llama", precision="fp32", max_new_tokens=8)
    m = run(request, cache).metrics
    loaded = cache.get("tiny-llama", "fp32")
    assert m.machine_read_gb_per_s is None and machine_limits() is None  # nothing measured in this cache yet
    kv = kv_bytes_per_position(loaded.model.config, torch.float32) * (m.input_tokens + m.new_tokens / 2)
    assert m.decode_read_mb == pytest.approx((loaded.footprint_bytes + kv) / 2**20)
    steps_per_s = m.decode_tokens_per_s * m.decode_steps / (m.new_tokens - 1)
    assert m.decode_gb_per_s == pytest.approx(m.decode_read_mb * 2**20 * steps_per_s / 1e9)
    assert m.prefill_gflop_per_s == pytest.approx(2 * loaded.parameters * m.input_tokens / m.prefill_ms * 1e-6)
    limits = measure_machine(repeats=1)
    assert machine_limits() == limits and limits.read_gb_per_s > 0 and limits.matmul_gflop_per_s > 0
    m = run(request, cache).metrics
    assert (m.machine_read_gb_per_s, m.machine_gflop_per_s) == (limits.read_gb_per_s, limits.matmul_gflop_per_s)
    assert "of this machine's" in metrics_line(Result("", m))
    assert run(ask("tiny-marian", precision="fp32"), cache).metrics.decode_read_mb is None  # causal models only
