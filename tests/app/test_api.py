"""Every endpoint through gradio_client against the running app, on the embedded model."""

from __future__ import annotations

import ast
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client.exceptions import AppError, ValidationError

from engine import DEFAULT_MODEL, get_spec, resolve_precision

pytestmark = pytest.mark.integration

PARK = (
    "The city council met on Tuesday to discuss the new park. After a long debate, members voted seven to "
    "two to fund the project, which will add playgrounds, a pond and walking paths. Construction starts in "
    "spring and should finish within a year."
)
AUTO = resolve_precision("auto", torch.device("cpu"), get_spec(DEFAULT_MODEL))  # what the app's default stands for here
METRIC_FIELDS = {
    "prefill_ms",
    "ttft_ms",
    "decode_tokens_per_s",
    "total_ms",
    "input_tokens",
    "new_tokens",
    "peak_memory_mb",
    "model_memory_mb",
    "device",
    "precision",
    "attention",
}


def call(client, api_name: str, *args, **kwargs):
    start = time.perf_counter()
    result = client.predict(*args, api_name=api_name, **kwargs)
    print(f"{api_name}: {time.perf_counter() - start:.2f} s end to end")  # shown with -s; quoted in notes
    return result


def assert_metrics(metrics: dict, attention: str = "dense") -> None:
    assert METRIC_FIELDS <= set(metrics)
    assert metrics["attention"] == attention and metrics["device"] == "cpu" and metrics["precision"] == AUTO
    assert metrics["prefill_ms"] > 0 and metrics["input_tokens"] > 0 and metrics["model_memory_mb"] > 100


def test_api_lists_the_stable_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {
        "/translate", "/summarize", "/chat", "/classify", "/generate_code", "/benchmark", "/frontier", "/attention_map",
        "/models", "/patterns", "/last_benchmark",
    }  # fmt: skip


TASK_INPUTS = {
    "/translate": ["text", "source", "target"],
    "/summarize": ["text", "length"],
    "/chat": ["message", "history", "system"],
    "/classify": ["text", "labels"],
    "/generate_code": ["prompt", "language"],
}


@pytest.mark.parametrize("endpoint", TASK_INPUTS)
def test_every_task_endpoint_offers_every_run_option_after_its_own_inputs(client, endpoint):
    from engine import OPTIONS

    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]
    parameters = {p["parameter_name"]: p for p in info["parameters"]}
    assert list(parameters) == TASK_INPUTS[endpoint] + [o.name for o in OPTIONS]  # today's order, then new ones
    for option in OPTIONS:
        assert parameters[option.name]["parameter_default"] == option.default, option.name


def test_seeded_sampling_is_reproducible_through_the_api(client):
    def answer(**options) -> str:
        history, _ = call(client, "/chat", "Tell me a story about a cat.", [], "", max_new_tokens=16, **options)
        return str(history[-1]["content"])

    sampled = {"temperature": 1.0, "top_p": 0.9, "seed": 1234}
    first = answer(**sampled)
    assert answer(**sampled) == first  # same seed, same sample
    assert any(answer(**{**sampled, "seed": seed}) != first for seed in (1, 2))  # the seed decides, not greedy


def test_translate(client):
    text, metrics = call(client, "/translate", "The weather is nice today.", "en", "fr", max_new_tokens=48)
    assert text.strip() and text.strip() != "The weather is nice today."
    assert_metrics(metrics)
    assert metrics["new_tokens"] <= 48


def test_summarize_is_shorter_than_the_document(client):
    summary, metrics = call(client, "/summarize", PARK, "short")
    assert 0 < len(summary) < len(PARK)
    assert "council" in summary.lower() or "park" in summary.lower()
    assert_metrics(metrics)
    assert metrics["decode_tokens_per_s"] > 0


def test_chat_answers_and_keeps_history(client):
    system = "You are a helpful assistant. Answer briefly."
    history, metrics = call(client, "/chat", "What is the capital of France?", [], system, max_new_tokens=24)
    assert [m["role"] for m in history] == ["user", "assistant"]
    answer = history[1]["content"][0]["text"] if isinstance(history[1]["content"], list) else history[1]["content"]
    assert "Paris" in answer
    assert_metrics(metrics)
    history, _ = call(client, "/chat", "And of Italy?", history, system, max_new_tokens=24)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Great service, friendly staff, I will come back!", "positive"),
        ("This was the worst meal I have ever had. Terrible.", "negative"),
    ],
)
def test_classify_clear_sentiment(client, text, label):
    scores, metrics = call(client, "/classify", text, "positive, negative, neutral")
    assert scores["label"] == label
    assert sum(c["confidence"] for c in scores["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert_metrics(metrics)


def test_generated_code_parses(client):
    prompt = "Write a function that returns the sum of a list of numbers."
    source, metrics = call(client, "/generate_code", prompt, "python", max_new_tokens=96)
    tree = ast.parse(source)
    assert any(isinstance(node, ast.FunctionDef) for node in ast.walk(tree))
    assert_metrics(metrics)


def test_compare_mode_returns_both_runs(client):
    # ~350 tokens against a 32-token window: sparse skips real work (on a few dozen tokens the
    # kernel's block overhead would compute more pairs than dense, and the density says so).
    document = " ".join([PARK] * 4)
    text, metrics = call(client, "/summarize", document, "short", attention="compare", window=32, sinks=4, trials=3)
    assert "--- dense ---" in text and "--- sparse ---" in text
    assert_metrics(metrics["dense"], "dense")
    assert_metrics(metrics["sparse"], "sparse")
    assert metrics["a"] == metrics["dense"] and metrics["labels"] == {"a": "dense", "b": "sparse"}
    comparison = metrics["comparison"]
    for timing in ("prefill", "ttft", "decode", "total"):
        t = comparison[timing]
        assert t["low"] <= t["ratio"] <= t["high"] and t["verdict"] in ("faster", "slower", "same") and t["trials"] == 3
    assert 0 <= comparison["token_agreement"] <= 1 and comparison["quality"]["kl_mean"] >= 0
    assert 0 < metrics["sparse"]["density"] < 1 and metrics["outputs"]["dense"] and metrics["outputs"]["sparse"]


def test_users_at_once_share_decode_steps(app_url):
    """Six users at once, each with its own client: every one answered, and their requests decoded
    together (continuous batching) rather than one after another."""
    from gradio_client import Client

    questions = ["Why is the sky blue?", "Name a fruit.", "What is 2 + 2?", "Say hello.", "Name a colour.", "Hi!"]

    def ask(question: str) -> dict:
        _, metrics = Client(app_url, verbose=False).predict(question, [], "", max_new_tokens=24, api_name="/chat")
        return metrics

    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(ask, questions))
    assert all(m["new_tokens"] >= 1 for m in answers)
    assert max(m["batch_size"] for m in answers) > 1


def test_any_two_settings_compare_through_the_api(client):
    """compare / compare_with on a task endpoint: here the same precision twice (an A/A test)."""
    text = "Great service, friendly staff, I will come back!"
    scores, metrics = call(client, "/classify", text, "positive, negative, neutral", precision="fp32",
                           compare="precision", compare_with="fp32", trials=2)  # fmt: skip
    assert metrics["axis"] == "precision" and metrics["labels"] == {"a": "fp32 (A)", "b": "fp32 (B)"}
    quality = metrics["comparison"]["quality"]
    assert quality["kl_mean"] == 0 and quality["tv_distance"] == 0 and scores["label"] == "positive"


def test_the_mcp_resources_read_as_json(client):
    """The model registry (with each task's default here), the patterns, and the last benchmark."""
    models = json.loads(client.predict(api_name="/models"))
    embedded = next(m for m in models if m["name"] == "smollm2-135m-instruct")
    assert set(embedded["default_for"]) == {"translation", "summarization", "dialogue", "classification", "code"}
    patterns = json.loads(client.predict(api_name="/patterns"))
    assert (
        patterns["quest"]["picks_keys_at_decode_by_content"]
        and patterns["block_topk"]["picks_keys_at_prefill_by_content"]
    )
    assert not patterns["sliding_sinks"]["picks_keys_at_decode_by_content"]
    assert isinstance(json.loads(client.predict(api_name="/last_benchmark")), dict)


def test_benchmark_sweep(client):
    op, model, table = call(client, "/benchmark", "smollm2-135m-instruct", "auto", [256, 512], 128, 4, True, 2)
    assert [(row[0], row[2]) for row in op["data"]] == [
        (256, "dense"),
        (256, "sparse"),
        (512, "dense"),
        (512, "sparse"),
    ]
    assert len(model["data"]) == 4 and all(row[1] > 0 for row in model["data"])
    headers = table["headers"]
    sparse_512 = dict(zip(headers, table["data"][3], strict=True))
    assert sparse_512["mode"] == "sparse" and sparse_512["flop_limit"] > 1 and sparse_512["density"] < 1
    last = json.loads(client.predict(api_name="/last_benchmark"))  # the MCP resource now holds this run
    assert last["kind"] == "sweep" and len(last["rows"]) == 4


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_cancelled_job_stops_its_compute_and_the_next_job_runs_alone(client):
    """job.cancel() closes the request's stream: the engine drops it at its next step, within 2 s,
    and the next request decodes alone (not beside a request nobody reads)."""
    from engine import DEFAULT_MODEL, default_engine

    job = client.submit("Write a long Python module with many functions.", "python", max_new_tokens=1024,
                        api_name="/generate_code")  # fmt: skip
    assert wait_until(lambda: len(job.outputs()) >= 3, 60)  # streaming: some code is out
    batches = default_engine().get(DEFAULT_MODEL, "auto").batches
    assert batches.by_key  # it is decoding
    job.cancel()
    cancelled = time.perf_counter()
    assert wait_until(lambda: not batches.by_key, 2.0)
    freed = time.perf_counter() - cancelled
    text, metrics = client.predict("Good morning.", "en", "fr", max_new_tokens=8, api_name="/translate")
    answered = time.perf_counter() - cancelled
    print(f"cancel: engine freed in {freed:.2f} s, next request answered {answered:.2f} s after the cancel")
    assert text and metrics["batch_size"] == 1


def test_too_many_labels_are_refused_before_the_queue(client):
    """300 labels never take a slot: the validator refuses them before the request joins the queue,
    while the queue is held busy (a long generation) and nothing else waits."""
    job = client.submit("Write a long Python module.", "python", max_new_tokens=512, api_name="/generate_code")
    assert wait_until(lambda: len(job.outputs()) >= 2, 60)
    labels = ", ".join(f"label{i}" for i in range(300))
    start = time.perf_counter()
    with pytest.raises(ValidationError, match="at most 20 candidate labels"):
        client.predict("Great service!", labels, api_name="/classify")
    refused = time.perf_counter() - start
    job.cancel()
    print(f"300 labels refused in {refused:.2f} s, before the queue")
    assert refused < 2


def test_attention_map_of_a_prompt(client):
    """Block top-k on the embedded model: the picture, and its data with the tiles it computed (some
    picked by content) over the dense probabilities, and the keys the first decode step read."""
    image, data = call(client, "/attention_map", PARK * 8, 20, 2, attention="sparse", pattern="block_topk",
                       window=64, budget=128)  # fmt: skip
    assert Path(image).stat().st_size > 10_000
    n = data["tokens"]
    assert 300 < n <= 1024 and data["attention"] == "block_topk" and (data["layer"], data["head"]) == (20, 2)
    assert data["content_tiles"] and set(map(tuple, data["content_tiles"])) <= set(map(tuple, data["tiles"]))
    assert 0 < data["density"] < 1 and 0 < data["mass_recall"] < 1
    assert len(data["probabilities"]) == n and len(data["decode_probabilities"]) == n + 1
    assert n in data["decode_keys"] and len(data["decode_keys"]) <= 4 + 64 + 128 + 1
    with pytest.raises(AppError, match="layers 0-29"):
        client.predict(PARK, 30, 0, api_name="/attention_map")


@pytest.mark.parametrize(
    ("kwargs", "message", "refused"),
    [  # refused before the queue: by the event's validator, or by Gradio reading the inputs for it (a
        # choice not offered: HTTP 400 with the reason); AppError: by the engine once the request runs
        ({"text": "   "}, "empty", ValidationError),
        ({"target": "en"}, "pick two different languages", ValidationError),
        ({"text": "word " * 9000}, "allow truncation", ValidationError),
        ({"precision": "fp8"}, "not in the list of choices", httpx.HTTPStatusError),
        ({"window": 0}, "less than minimum value 1", httpx.HTTPStatusError),
        ({"model": "smollm2-360m-instruct"}, "not in the local Hugging Face cache", AppError),
    ],
)
def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client, kwargs, message, refused):
    request = {"text": "Good morning.", "source": "en", "target": "fr", "max_new_tokens": 8, **kwargs}
    with pytest.raises(refused) as caught:
        client.predict(api_name="/translate", **request)
    assert message in (caught.value.response.text if refused is httpx.HTTPStatusError else str(caught.value))
    text, metrics = client.predict("Good morning.", "en", "de", max_new_tokens=8, api_name="/translate")
    assert text and metrics["new_tokens"] >= 1


def test_an_edited_chat_message_is_asked_again_as_edited():
    import gradio as gr

    from ui.task_tab import edit_turn

    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
               {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"}]  # fmt: skip
    edit = gr.EditData(None, {"index": 2, "value": "second, edited", "previous_value": "second"})
    assert edit_turn(history, edit) == (history[:2], "second, edited")


def test_logprobs_come_with_the_metrics_when_asked(client):
    """The protocol's `logprobs=k` at fp32: per generated token, the chosen token and k alternatives,
    whose log-probabilities equal a teacher-forced forward over the same prompt and answer within 1e-3."""
    from engine import RunOptions, default_engine
    from engine.attention.choice import DENSE
    from engine.runtime.decoding import encode_prompt
    from tasks import dialogue

    question = "What is the capital of France?"
    history, metrics = call(client, "/chat", question, [], "", precision="fp32", max_new_tokens=12, logprobs=5)
    tokens = metrics["logprobs"]
    assert len(tokens) == metrics["new_tokens"] > 0
    assert "".join(t["token"] for t in tokens).strip() in str(history[-1]["content"])
    loaded = default_engine().get(DEFAULT_MODEL, "fp32")
    prompt = encode_prompt(loaded, dialogue.build_request(question, [], "", RunOptions(precision="fp32"))).input_ids
    answer = torch.tensor([[t["token_id"] for t in tokens]])
    with torch.inference_mode():
        ids = torch.cat([prompt, answer[:, :-1]], dim=1)
        logits = loaded.model(input_ids=ids, studio_choice=DENSE).logits[0, prompt.shape[1] - 1 :]
    expected = torch.log_softmax(logits.float(), dim=-1)
    for token, row in zip(tokens, expected, strict=True):
        best = row.topk(5)
        assert [a["token_id"] for a in token["top"]] == best.indices.tolist()
        assert [a["logprob"] for a in token["top"]] == pytest.approx(best.values.tolist(), abs=1e-3)
        assert token["logprob"] == pytest.approx(float(row[token["token_id"]]), abs=1e-3)
        assert token["top"][0]["token_id"] == token["token_id"]  # greedy: the most likely
    _, plain = call(client, "/chat", question, [], "", max_new_tokens=4)
    assert "logprobs" not in plain
