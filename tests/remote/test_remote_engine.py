"""Every task, a comparison and the faults, through a real llama.cpp server on a loopback port."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from llama_server import REMOTE, registry_text, start_server

from engine import (
    Chunk,
    Comparison,
    Engine,
    GenerationRequest,
    Message,
    Result,
    RunOptions,
    StudioError,
    run,
    stream_request,
)
from engine.api.frontends import installed_tasks
from engine.models.registry import DEFAULT_MODEL
from engine.platform.errors import AttentionConfigError, ModelLoadError, PrecisionError, RemoteError

pytestmark = [pytest.mark.llama_server, pytest.mark.integration]

INPUTS = {
    "translation": "Where is the train station?",
    "summarization": "The council voted to build a new park with a pond and playgrounds. Work starts in spring.",
    "dialogue": "What is the capital of France?",
    "code": "a function that adds two numbers",
    "classification": "I loved this film, it was wonderful.",
}
LONG_ANSWER = Message("user", "Write a long story about a cat who travels the world, with many chapters.")


@pytest.fixture(scope="module")
def cache() -> Engine:
    return Engine(budget_mb=20_000, device=torch.device("cpu"))


def task_request(task: str, **options):
    """The request the task's own front end builds (its CLI flags at their defaults)."""
    cli = installed_tasks()[task]
    values = {"model": REMOTE, "max_new_tokens": 16, **options}
    return cli.build(INPUTS[task], RunOptions(**values), **{flag.name: flag.default for flag in cli.flags})


def streamed(request, cache) -> tuple[list[str], Result | Comparison]:
    chunks, final = [], None
    for event in stream_request(request, cache):
        if isinstance(event, Chunk):
            chunks.append(event.text)
        else:
            final = event
    return chunks, final


@pytest.mark.parametrize("task", ["translation", "summarization", "dialogue", "code"])
def test_every_generating_task_streams_from_the_server_with_metrics(task, remote_registry, cache):
    chunks, result = streamed(task_request(task), cache)
    assert len(chunks) > 1 and "".join(chunks) == result.text  # streamed piece by piece
    m = result.metrics
    assert (m.precision, m.attention, m.decode_path) == ("server", "server", "server")
    assert m.device.startswith("remote 127.0.0.1:")
    assert 0 < m.ttft_ms <= m.total_ms
    assert m.new_tokens == len(chunks)  # llama.cpp sends no usage in a stream: one token per piece
    assert m.decode_tokens_per_s > 0
    assert result.finish_reason in ("stop", "length")


def test_plain_text_goes_to_completions(remote_registry, cache):
    request = GenerationRequest(RunOptions(model=REMOTE, max_new_tokens=8), text="The capital of France is")
    chunks, result = streamed(request, cache)
    assert result.text and result.metrics.new_tokens == len(chunks) <= 8


def test_greedy_is_deterministic_and_stops_are_passed(remote_registry, cache):
    first = run(task_request("dialogue"), cache)
    assert run(task_request("dialogue"), cache).text == first.text
    assert first.metrics.new_tokens >= 2
    word = first.text.split()[1]
    stopped = run(replace(task_request("dialogue"), stop=(word,)), cache)
    assert word not in stopped.text and stopped.finish_reason == "stop"


@pytest.mark.parametrize("chat", [True, False])
def test_logprobs_come_from_the_server_per_token(chat, remote_registry, cache):
    """`logprobs=k` asks the server (chat's logprobs/top_logprobs, or completions' logprobs): each token
    with k ranked alternatives, and the tokens spell the answer. (Greedy need not pick the most likely:
    llama-cpp-python's server applies its own repeat penalty, 1.1, to the raw log-probabilities it sends.)"""
    request = (
        task_request("dialogue", logprobs=3)
        if chat
        else GenerationRequest(RunOptions(model=REMOTE, max_new_tokens=8, logprobs=3), text="The capital of France is")
    )
    result = run(request, cache)
    assert result.logprobs and len(result.logprobs) == result.metrics.new_tokens
    for token in result.logprobs:
        assert token.token_id is None and len(token.top) == 3
        assert token.top[0].logprob >= token.top[1].logprob >= token.top[2].logprob >= -1e9
        assert token.logprob <= token.top[0].logprob + 1e-4
        listed = {a.token: a.logprob for a in token.top}
        assert listed.get(token.token, token.logprob) == pytest.approx(token.logprob, abs=1e-4)
    assert "".join(t.token for t in result.logprobs) == result.text


def test_classification_scores_labels_from_the_servers_logprobs(remote_registry, cache):
    result = run(task_request("classification"), cache)
    assert set(result.scores) == {"positive", "negative", "neutral"}
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert result.text == max(result.scores, key=result.scores.get) == "positive"
    assert result.metrics.input_tokens > 0 and result.metrics.new_tokens == 0


def test_local_engine_and_server_side_by_side(remote_registry, cache):
    """The comparison's model axis: this engine (A) vs llama.cpp (B) on the same chat prompt."""
    request = task_request("dialogue", model=DEFAULT_MODEL, compare="model", compare_with=REMOTE, trials=2)
    comparison = run(request, cache)
    assert (comparison.a_label, comparison.b_label) == (DEFAULT_MODEL, REMOTE)
    assert comparison.ttft.trials == comparison.total.trials == 2
    assert comparison.decode is not None and all(v > 0 for v in comparison.decode.a + comparison.decode.b)
    assert comparison.prefill is None  # the server reports no prefill of its own
    assert comparison.b.metrics.precision == "server" and comparison.a.metrics.precision != "server"
    assert comparison.quality is None and "remote" in comparison.quality_note
    assert 0 <= comparison.token_agreement <= 1  # B's text tokenized by A's tokenizer


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"precision": "bf16"}, PrecisionError),
        ({"attention": "sparse"}, AttentionConfigError),
        ({"attention": "compare"}, AttentionConfigError),
        ({"compare": "precision", "compare_with": "bf16"}, PrecisionError),
        ({"repetition_penalty": 1.2}, StudioError),
    ],
)
def test_settings_the_server_owns_are_refused(options, error, remote_registry, cache):
    with pytest.raises(error, match=REMOTE):
        run(task_request("dialogue", **options), cache)


def test_the_lab_measures_local_models_only(remote_registry, cache):
    with pytest.raises(ModelLoadError, match="not loaded here"):
        cache.get(REMOTE, "auto")


# Faults: each a one-sentence error naming the model and what failed, within the time limit; then the
# local engine still serves.


def use_remote(tmp_path, studio_env, url: str, name: str = "faulty") -> str:
    path = tmp_path / "faulty.toml"
    path.write_text(registry_text(name, url))
    studio_env("STUDIO_MODELS", str(path))
    return name


def chat_on(model: str):
    return task_request("dialogue", model=model)


def assert_fails_fast(request, cache, *phrases: str, within_s: float = 10.0) -> str:
    start = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        run(request, cache)
    message = str(caught.value)
    assert time.monotonic() - start < within_s
    assert message.startswith(request.options.model) and "\n" not in message
    for phrase in phrases:
        assert phrase in message
    return message


def test_connection_refused(tmp_path, studio_env, cache):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        model = use_remote(tmp_path, studio_env, f"http://127.0.0.1:{port}/v1")
        assert_fails_fast(chat_on(model), cache, "connection failed", "refused")


def test_unknown_host(tmp_path, studio_env, cache):
    model = use_remote(tmp_path, studio_env, "http://no-such-host.invalid/v1")
    assert_fails_fast(chat_on(model), cache, "connection failed")


def test_a_server_that_never_answers_times_out(tmp_path, studio_env, cache):
    with socket.socket() as sock:  # accepts connections (the kernel's backlog) and never replies
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        model = use_remote(tmp_path, studio_env, f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
        studio_env("STUDIO_REMOTE_TIMEOUT_S", "1")
        assert_fails_fast(chat_on(model), cache, "no answer within 1 s", within_s=5)


def test_http_error_status(llama_server, tmp_path, studio_env, cache):
    model = use_remote(tmp_path, studio_env, llama_server.url.replace("/v1", "/no-such-api"))
    assert_fails_fast(chat_on(model), cache, "HTTP 404")


@pytest.fixture
def broken_stream_server() -> Iterator[str]:
    """An HTTP server whose stream starts well and then sends a chunk that is not JSON."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b'data: {"id": "1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n')
            self.wfile.write(b"data: {not json\n\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_malformed_stream(broken_stream_server, tmp_path, studio_env, cache):
    model = use_remote(tmp_path, studio_env, broken_stream_server)
    assert_fails_fast(chat_on(model), cache, "unreadable")


def test_killed_mid_answer_then_local_requests_still_work(tmp_path, studio_env, cache):
    server = start_server(tmp_path / "killed.log")
    try:
        model = use_remote(tmp_path, studio_env, server.url, name="killed")
        request = replace(task_request("dialogue", model=model, max_new_tokens=400), messages=(LONG_ANSWER,))
        events = stream_request(request, cache)
        assert isinstance(next(events), Chunk)  # the answer has started
        server.stop()
        with pytest.raises(RemoteError, match=r"^killed .*connection failed while streaming"):
            for _ in events:
                pass
    finally:
        server.stop()
    local = run(task_request("dialogue", model=DEFAULT_MODEL), cache)
    assert local.text and local.metrics.precision != "server"


def test_a_key_named_but_not_set(llama_server, tmp_path, studio_env, cache, monkeypatch):
    path = tmp_path / "keyed.toml"
    path.write_text(registry_text("keyed", llama_server.url, extra='api_key_env = "REMOTE_TEST_KEY"'))
    studio_env("STUDIO_MODELS", str(path))
    monkeypatch.delenv("REMOTE_TEST_KEY", raising=False)
    with pytest.raises(RemoteError, match="set REMOTE_TEST_KEY"):
        run(chat_on("keyed"), cache)
    monkeypatch.setenv("REMOTE_TEST_KEY", "secret")  # llama.cpp without --api_key accepts any
    assert run(chat_on("keyed"), cache).text
