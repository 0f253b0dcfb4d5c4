"""Tasks: inputs -> requests (tiny registry models), results -> what the UI and API show."""

from __future__ import annotations

import pytest

from engine import (
    AttentionMap,
    Comparison,
    Engine,
    InputError,
    Message,
    Result,
    RunOptions,
    compare_timing,
    comparison_line,
    comparison_rows,
    from_payload,
    labelled,
    metrics_line,
    run,
    timing_text,
    to_payload,
)
from tasks import classification, code, dialogue, summarization, translation
from tasks.render import attention_image, comparison_figure, comparison_table

CHAT = RunOptions(model="tiny-llama", max_new_tokens=4)


@pytest.mark.parametrize(
    "build",
    [
        lambda: translation.build_request("  ", "en", "fr", CHAT),
        lambda: summarization.build_request("\n", "short", CHAT),
        lambda: classification.build_request("", "a, b", CHAT),
        lambda: code.build_request(" ", "python", CHAT),
        lambda: dialogue.build_request(" ", [], "system", CHAT),
    ],
)
def test_empty_inputs_are_clear_errors(tiny_env, build):
    with pytest.raises(InputError, match="empty"):
        build()


def test_translation_checks_languages_and_pairs(tiny_env):
    with pytest.raises(InputError, match="both English"):
        translation.build_request("hi", "en", "en", CHAT)
    with pytest.raises(InputError, match="Unknown language"):
        translation.build_request("hi", "en", "xx", CHAT)
    with pytest.raises(InputError, match="cannot translate English to German"):
        translation.build_request("hi", "en", "de", RunOptions(model="tiny-marian"))
    assert translation.build_request("hi", "en", "fr", RunOptions(model="tiny-marian")).text == "hi"
    assert translation.build_request("hi", "en", "de", RunOptions(model="tiny-t5")).text.startswith("translate English")
    assert translation.build_request("one line", "en", "fr", CHAT).stop == ("\n\n",)
    assert translation.build_request("para one\n\npara two", "en", "fr", CHAT).stop == ()


def test_summary_instruction_follows_the_document(tiny_env):
    request = summarization.build_request("DOC " * 50, "medium", CHAT)
    user = request.messages[-1].content
    assert user.startswith("DOC") and user.rstrip().endswith("3 sentences.")
    assert summarization.build_request("x", "long", RunOptions(model="tiny-llama")).options.max_new_tokens == 128
    with pytest.raises(InputError, match="length"):
        summarization.build_request("x", "huge", CHAT)


def test_dialogue_reads_gradio_and_plain_histories(tiny_env):
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": [{"type": "file", "file": {}}]},  # nothing to say: skipped
    ]
    request = dialogue.build_request("and now?", history, "be brief", CHAT)
    assert request.messages == (
        Message("system", "be brief"),
        Message("user", "hello"),
        Message("assistant", "hi there"),
        Message("user", "and now?"),
    )


def test_labels_and_code_helpers():
    assert classification.parse_labels(" a, b ,a,, c") == ("a", "b", "c")
    with pytest.raises(InputError):
        classification.parse_labels("only")
    assert code.extract_code("Sure:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1"
    assert code.extract_code("```python\ndef f(") == "def f("  # unterminated while streaming
    assert code.highlight_language("bash") == "shell" and code.highlight_language("rust") is None


def test_compare_render_from_metrics_json(tiny_env):
    cache = Engine(budget_mb=10_000)
    final = run(translation.build_request("hello world", "en", "fr", RunOptions(model="tiny-marian",
                attention="compare", window=2, sinks=1, max_new_tokens=5, trials=3)), cache)  # fmt: skip
    payload = to_payload(final)
    assert set(payload) == {"axis", "labels", "a", "b", "dense", "sparse", "outputs", "comparison"}
    assert payload["dense"] == payload["a"] and payload["outputs"]["sparse"] == payload["outputs"]["b"]
    for timing in ("prefill", "ttft", "decode", "total"):
        assert set(payload["comparison"][timing]) >= {"ratio", "low", "high", "verdict", "trials"}
    assert set(payload["comparison"]["quality"]) >= {"kl_mean", "top1_agreement", "perplexity_a", "perplexity_b"}
    typed = from_payload(payload)  # what the UI renders from: typed, equal to the engine's result but token ids
    assert isinstance(typed, Comparison) and typed.a.metrics == final.a.metrics
    assert typed.prefill == final.prefill and typed.quality == final.quality and typed.b.text == final.b.text
    rows = comparison_rows(typed)
    assert [r[0] for r in rows][:4] == ["prefill (ms)", "time to first token (ms)", "decode (tokens/s)", "total (ms)"]
    agreement = next(r for r in rows if r[0].startswith("output agreement"))
    assert "identical" in agreement[3]
    assert len(final.other_work_ms) == final.total.trials  # measured for every pair (local sides)
    assert rows[-1][0].startswith("other work") and "at most" in rows[-1][3]
    assert rows == comparison_rows(final)
    table = comparison_table(typed)
    assert list(table.columns) == ["metric", "A: dense", "B: sparse", "B vs A"]
    figure = comparison_figure(typed)
    bars = figure.axes[0].patches
    assert len(bars) == 8 and all(bar.get_height() > 0 for bar in bars)  # 4 phases x (A, B)
    assert "sparse vs dense" in comparison_line(typed)
    assert labelled({"dense": "a", "sparse": "b"}) == "--- dense ---\na\n\n--- sparse ---\nb"
    assert labelled({"sparse": "b"}) == "b"


def test_a_same_verdict_never_reads_faster():
    same = compare_timing([100, 101, 99], [80, 120, 99])
    assert same.verdict == "same" and "faster" not in timing_text(same) and "slower" not in timing_text(same)
    assert timing_text(compare_timing([200, 201, 199], [100, 101, 99])).startswith("2.00x faster")


def test_single_run_payload_round_trips_and_renames_fail_loudly(tiny_env):
    final = run(translation.build_request("hello world", "en", "fr", RunOptions(model="tiny-marian", max_new_tokens=3)),
                Engine(budget_mb=10_000))  # fmt: skip
    typed = from_payload(to_payload(final))
    assert isinstance(typed, Result) and typed.metrics == final.metrics
    assert metrics_line(typed) == metrics_line(final) and "prefill" in metrics_line(typed)
    renamed = {("prefill" if k == "prefill_ms" else k): v for k, v in to_payload(final).items()}
    with pytest.raises(ValueError, match="prefill_ms"):
        from_payload(renamed)


@pytest.mark.parametrize("per_token", [True, False])
def test_the_attention_picture_renders_per_token_and_per_tile(per_token):
    """A hand-made map of 4 tokens in tiles of 2: the image, from token probabilities or (past
    MAP_TOKENS) from the tile masses alone."""
    probabilities = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.3, 0.5, 0], [0.1, 0.2, 0.3, 0.4]]
    found = AttentionMap(
        model="tiny", attention="block_topk", side="", layer=0, head=0, kv_head=0, layers=1, heads=1, tokens=4,
        block=2, tiles=[(0, 0), (1, 0), (1, 1)], content_tiles=[(1, 0)], density=0.8, mass_recall=0.9,
        decode_keys=[0, 3, 4], decode_probabilities=[0.1, 0.1, 0.2, 0.3, 0.3], decode_mass_recall=0.7,
        tile_mass=[[1, 0], [0.3, 0.7]], probabilities=probabilities if per_token else None,
    )  # fmt: skip
    image = attention_image(found)
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 300 and image.std() > 0


def test_the_chat_map_shows_the_typed_message_else_the_last_one_sent(tiny_env):
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
               {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"}]  # fmt: skip
    typed = dialogue.shown_request("third", history, "", RunOptions())
    assert [m.content for m in typed.messages] == ["first", "one", "second", "two", "third"]
    sent = dialogue.shown_request("  ", history, "be brief", RunOptions())
    assert [m.content for m in sent.messages] == ["be brief", "first", "one", "second"]
    with pytest.raises(InputError, match="send a message first"):
        dialogue.shown_request("", [], "", RunOptions())
