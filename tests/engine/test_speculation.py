"""Speculative decoding (engine.runtime.speculation): guesses checked in one forward change the speed,
never the output. Greedy tokens equal plain decoding's on tiny models, alone and in batches mixing
speculating and plain rows; a sample keeps its distribution."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from test_batching import TEXTS, together, wait_until
from test_engine import ask

from engine import Chunk, Comparison, Engine, InputError, PrecisionError, run, stream_request
from engine.api.options import RunOptions
from engine.runtime import speculation
from engine.runtime.sampling import TokenPicker
from engine.runtime.speculation import expected_tokens, lookup

# A prompt whose continuation a random model tends to loop on: lookups find their n-grams
REPEATS = "one two three four five six seven eight " * 6


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def test_lookup_copies_what_followed_the_latest_earlier_occurrence():
    ids = torch.tensor([5, 1, 2, 3, 9, 1, 2, 3, 7, 8, 4, 1, 2, 3])
    assert lookup(ids, ngram=3, count=2) == [7, 8]  # the latest earlier "1 2 3", not the first
    assert lookup(ids, ngram=3, count=10) == [7, 8, 4, 1, 2, 3]  # up to the end of what is known
    assert lookup(torch.tensor([1, 2, 3, 4, 2, 3]), ngram=3, count=2) == [4, 2]  # "4 2 3" never: "2 3" did
    assert lookup(torch.tensor([1, 2, 3, 4]), ngram=3, count=2) == []  # nothing recurs
    assert lookup(torch.tensor([6, 6, 6]), ngram=2, count=3) == [6]  # a run of one token: the next of it
    assert lookup(torch.tensor([6]), ngram=3, count=3) == []
    assert lookup(torch.tensor([1, 2, 3, 1]), ngram=3, count=2, shortest=2) == []  # one recurring token: no guess
    assert lookup(torch.tensor([1, 2, 3, 1]), ngram=3, count=2) == [2, 3]


def _greedy(cache: Engine, speculation: str, **options):
    options = {"max_new_tokens": 40, "precision": "fp32", **options}
    return run(ask("tiny-llama", text=REPEATS, speculation=speculation, **options), cache)


@pytest.mark.parametrize("lookahead", [1, 5, 16])
def test_greedy_tokens_are_plain_decodings_whatever_is_guessed(cache, lookahead):
    """Guesses both kept and refused (the row cache's keys past a refusal are written over later):
    single recurring tokens guess too here (lookup_ngram 1), so that many are refused."""
    plain = _greedy(cache, "none")
    fast = _greedy(cache, "prompt_lookup", lookahead=lookahead, lookup_ngram=1)
    assert fast.token_ids == plain.token_ids and fast.text == plain.text
    m = fast.metrics
    assert m.speculation == "prompt_lookup" and m.proposed_tokens > m.accepted_tokens > 0
    assert m.decode_steps < plain.metrics.decode_steps  # each kept guess saved a step
    assert m.new_tokens - 1 == m.decode_steps + m.accepted_tokens  # a step: its pick and the guesses kept
    assert plain.metrics.proposed_tokens == 0 and plain.metrics.decode_steps == plain.metrics.new_tokens - 1


def test_the_stop_rules_hold_inside_a_run_of_kept_guesses(cache):
    """max_new_tokens and stop strings end the answer where plain decoding ends it, even mid-guess."""
    plain = _greedy(cache, "none", max_new_tokens=7)
    fast = _greedy(cache, "prompt_lookup", max_new_tokens=7)
    assert fast.token_ids == plain.token_ids and len(fast.token_ids) <= 7
    stop = plain.text[len(plain.text) // 2 :][:3]
    if stop.strip():
        with_stop = [
            run(ask("tiny-llama", text=REPEATS, precision="fp32", max_new_tokens=7, speculation=s, stop=(stop,)), cache)
            for s in ("none", "prompt_lookup")
        ]
        assert with_stop[0].text == with_stop[1].text


def test_a_batch_mixes_speculating_and_plain_rows(cache):
    """Rows with and without guesses share each step; each row's tokens are what it gets alone."""
    requests = [
        ask("tiny-llama", text=text, precision="fp32", max_new_tokens=12, speculation=s)
        for text in TEXTS
        for s in ("none", "prompt_lookup")
    ]
    alone = [run(request, cache) for request in requests]
    in_batch = together(cache, requests)
    for one, batched in zip(alone, in_batch, strict=True):
        assert batched.token_ids == one.token_ids
    assert max(r.metrics.batch_size for r in in_batch) == len(requests)
    assert sum(r.metrics.accepted_tokens for r in in_batch) > 0
    assert wait_until(lambda: not cache.get("tiny-llama", "fp32").batches.by_key)


def test_a_request_that_stops_reading_mid_speculation_leaves_the_batch(cache):
    long = ask("tiny-llama", text=TEXTS[0], precision="fp32", max_new_tokens=400, speculation="prompt_lookup")
    other = ask("tiny-llama", text=TEXTS[1], precision="fp32", max_new_tokens=30, speculation="prompt_lookup")
    expected = run(other, cache)
    with ThreadPoolExecutor(1) as pool:
        events = stream_request(long, cache)
        assert next(e for e in events if isinstance(e, Chunk)).text
        second = pool.submit(run, other, cache)
        events.close()  # the user went away between two checked runs
        assert second.result(timeout=60).token_ids == expected.token_ids
    assert wait_until(lambda: not cache.get("tiny-llama", "fp32").batches.by_key)


def test_compiled_checking_steps_give_the_eager_tokens(cache):
    """One compiled step per width (4 for three guesses and the last token; 1 where no row guesses)."""
    request = ask("tiny-llama", text=REPEATS, precision="fp32", max_new_tokens=40, speculation="prompt_lookup",
                  lookahead=3)  # fmt: skip
    eager = run(request, cache)
    compiled = cache.get("tiny-llama", "fp32").compiled
    for width in (1, 4):
        compiled.compile_now(eager.metrics.input_tokens + 40, width=width)
    assert not compiled.failures and compiled.kept() == 2
    fast = run(request, cache)
    assert eager.metrics.decode_path == "eager" and fast.metrics.decode_path == "compiled"
    assert fast.token_ids == eager.token_ids and fast.metrics.proposed_tokens == eager.metrics.proposed_tokens > 0
    assert fast.metrics.accepted_tokens == eager.metrics.accepted_tokens


def test_a_speculation_comparison_agrees_token_for_token(cache):
    comparison = run(
        ask("tiny-llama", text=REPEATS, precision="fp32", max_new_tokens=16, compare="speculation",
            compare_with="prompt_lookup", trials=2),
        cache,
    )  # fmt: skip
    assert isinstance(comparison, Comparison)
    assert (comparison.a_label, comparison.b_label) == ("none", "prompt_lookup")
    assert comparison.a.token_ids == comparison.b.token_ids
    assert comparison.quality is not None and comparison.quality.kl_mean == pytest.approx(0, abs=1e-6)
    assert comparison.quality.top1_agreement == 1.0


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("tiny-t5", {}, "seq2seq model"),
        ("tiny-llama", {"attention": "sparse"}, "dense attention"),
        ("tiny-llama", {"speculation": "none", "compare": "speculation", "compare_with": "telepathy"},
         "Unknown speculation"),
    ],
)  # fmt: skip
def test_what_cannot_speculate_says_so(cache, model, options, message):
    request = ask(model, text="hello there", **{"speculation": "prompt_lookup", **options})
    with pytest.raises(InputError, match=message):
        run(request, cache)


def test_a_draft_must_be_cheaper_and_share_the_cache_dtype(cache):
    """The draft's own guessing is tested on the embedded model (its fp32 and gguf-q8 share a dtype)."""
    with pytest.raises(PrecisionError, match="model's own"):
        run(ask("tiny-llama", precision="fp32", speculation="draft", draft_precision="fp32"), cache)
    with pytest.raises(PrecisionError, match="share one KV cache"):
        run(ask("tiny-llama", precision="fp32", speculation="draft", draft_precision="fp16"), cache)


def test_expected_tokens_follow_the_share_kept():
    assert expected_tokens(0, 0, 3) == pytest.approx(1 + 2 / 3 + (2 / 3) ** 2 + (2 / 3) ** 3)  # the prior
    assert expected_tokens(0, 30, 3) < 1.1  # guesses that never held: barely more than the check's own
    assert expected_tokens(98, 100, 3) > 3.8
    assert expected_tokens(5, 5, 0) == 1


@pytest.mark.parametrize(("width_cost", "guesses"), [(1.0, True), (100.0, False)])
def test_auto_guesses_only_where_checking_pays(cache, monkeypatch, width_cost, guesses):
    """auto weighs each step: with checking as cheap as a plain step, looping text is guessed; at
    100 times the price, nothing is; the tokens are plain decoding's either way."""
    monkeypatch.setattr(speculation, "WIDTH_COST", dict.fromkeys(speculation.WIDTH_COST, width_cost) | {1: 1.0})
    plain = _greedy(cache, "none")
    auto = _greedy(cache, "auto")
    assert auto.token_ids == plain.token_ids
    assert (auto.metrics.proposed_tokens > 0) == guesses


def test_a_sampled_guess_keeps_the_distribution():
    """The rejection rule: a guess kept with probability p(guess), else a draw from p without it; the
    tokens then follow p, whatever is guessed (20k draws, each token within 4 standard errors)."""
    picker = TokenPicker(SimpleNamespace(model=None, device=torch.device("cpu")), RunOptions(temperature=1.0, seed=3))
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    p = torch.softmax(logits, -1)
    draws = 20_000
    for guess in (0, 3):  # a likely guess and an unlikely one
        counts = torch.bincount(
            torch.tensor([picker(logits, torch.zeros((1, 1), dtype=torch.long), guess) for _ in range(draws)]),
            minlength=len(p),
        )
        standard_error = (p * (1 - p) / draws).sqrt()
        assert ((counts / draws - p).abs() <= 4 * standard_error).all(), (guess, counts / draws, p)
