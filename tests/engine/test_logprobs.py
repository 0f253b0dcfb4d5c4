"""Token log-probabilities (`logprobs=k`): taken from the logits that chose each token, they equal a
teacher-forced forward over the prompt and the answer, for a causal and a seq2seq model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_engine import ask

from engine import Engine, InputError, run
from engine.api.report import from_payload, to_payload
from engine.attention.choice import DENSE
from engine.runtime.decoding import encode_prompt


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def teacher_forced(loaded, request, token_ids: list[int]) -> torch.Tensor:
    """Log-probabilities at each answer position from one forward over the prompt and the answer."""
    prompt = encode_prompt(loaded, request).input_ids
    answer = torch.tensor([token_ids], dtype=torch.long)
    with torch.inference_mode():
        if loaded.spec.family == "causal":
            ids = torch.cat([prompt, answer[:, :-1]], dim=1)
            logits = loaded.model(input_ids=ids, studio_choice=DENSE).logits[0, prompt.shape[1] - 1 :]
        else:
            start = torch.tensor([[loaded.decoder_start]])
            decoder = torch.cat([start, answer[:, :-1]], dim=1)
            logits = loaded.model(input_ids=prompt, decoder_input_ids=decoder, studio_choice=DENSE).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


@pytest.mark.parametrize(
    ("model", "sampling"),
    [
        ("tiny-llama", {}),
        ("tiny-llama", {"temperature": 0.9, "top_p": 0.8, "seed": 3}),
        ("tiny-llama", {"speculation": "prompt_lookup", "lookup_ngram": 1, "max_new_tokens": 16}),  # checked runs
        ("tiny-marian", {}),
        ("tiny-t5", {}),
    ],
)
def test_each_tokens_logprobs_are_a_teacher_forced_forwards(cache, model, sampling):
    request = ask(model, **{"precision": "fp32", "max_new_tokens": 8, "logprobs": 5, **sampling})
    result = run(request, cache)
    assert result.token_ids and result.logprobs is not None
    assert [t.token_id for t in result.logprobs] == result.token_ids
    assert result.metrics.proposed_tokens > 0 or "speculation" not in sampling
    assert "".join(t.token for t in result.logprobs) == result.text  # each token's own text, spaces included
    expected = teacher_forced(cache.get(model, "fp32"), request, result.token_ids)
    for position, (token, row) in enumerate(zip(result.logprobs, expected, strict=True)):
        assert token.logprob == pytest.approx(float(row[token.token_id]), abs=1e-3), position
        best = row.topk(5)
        assert [a.logprob for a in token.top] == pytest.approx(best.values.tolist(), abs=1e-3)
        assert len(token.top) == 5 and token.top[0].logprob >= token.top[-1].logprob
        if not sampling:  # greedy: the chosen token is the most likely one
            assert token.logprob == pytest.approx(token.top[0].logprob)


def test_logprobs_only_when_asked_and_they_survive_the_payload(cache):
    assert run(ask("tiny-llama", precision="fp32"), cache).logprobs is None
    result = run(ask("tiny-llama", precision="fp32", logprobs=2), cache)
    back = from_payload(to_payload(result))
    assert back.logprobs == result.logprobs and all(len(t.top) == 2 for t in back.logprobs)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-marian", "tiny-t5"])
def test_a_branch_continues_from_an_alternative_as_if_the_model_had_picked_it(cache, model):
    request = ask(model, precision="fp32", max_new_tokens=8, logprobs=3)
    original = run(request, cache)
    at = 2
    alternative = next(a for a in original.logprobs[at].top if a.token_id != original.token_ids[at])
    start = (*original.token_ids[:at], alternative.token_id)
    branch = run(replace(request, answer_start=start), cache)
    so_far = "".join(t.token for t in original.logprobs[:at]) + alternative.token
    assert branch.text == so_far + "".join(t.token for t in branch.logprobs)  # the whole answer, start included
    assert branch.metrics.new_tokens == len(branch.token_ids) == len(branch.logprobs)  # generated after it
    expected = teacher_forced(cache.get(model, "fp32"), request, [*start, *branch.token_ids])[len(start) :]
    for token, row in zip(branch.logprobs, expected, strict=True):
        assert token.logprob == pytest.approx(float(row[token.token_id]), abs=1e-3)
        assert token.token_id == int(row.argmax())  # greedy from the start on


def test_a_branch_must_start_inside_the_vocabulary_and_run_alone(cache):
    with pytest.raises(InputError, match="vocabulary"):
        run(ask("tiny-llama", answer_start=(10**6,)), cache)
    with pytest.raises(InputError, match="branch"):
        run(ask("tiny-llama", answer_start=(5,), attention="compare"), cache)


def test_a_comparison_shows_both_sides_distributions_where_the_answers_part(cache):
    """Teacher-forced on A's answer, whose tokens before the divergence are B's too: each side's
    distribution there is the one it chose its own token from (its logprobs, asked of both runs)."""
    request = ask("tiny-llama", precision="fp32", max_new_tokens=16, logprobs=5, compare="precision",
                  compare_with="int4-wo", trials=1)  # fmt: skip
    comparison = run(request, cache)
    at, parted = comparison.first_divergence, comparison.divergence
    assert at is not None and parted is not None and parted.at == at  # these random weights part early
    for side, result in (("a", comparison.a), ("b", comparison.b)):
        own, scored = result.logprobs[at], getattr(parted, side)
        assert scored.token_id == own.token_id == result.token_ids[at] and scored.token == own.token
        # int4-wo's kernel for one decoded row and for the teacher-forced answer round apart: 0.002
        # on an AMD EPYC (fp32: both within 1e-3)
        assert scored.logprob == pytest.approx(own.logprob, abs=1e-3 if side == "a" else 1e-2)
        assert [a.token_id for a in scored.top] == [a.token_id for a in own.top]
    assert parted.a.token_id != parted.b.token_id
    assert parted.context and parted.context in comparison.a.text
    back = from_payload(to_payload(comparison))
    assert back.divergence == parted
