"""The engine's front door (engine.service): a request is admitted once. The app's validator admits
it (precheck) and its handler runs it: the rules run once and the prompt is tokenized once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch

import engine.runtime.decoding as decoding
import engine.service as service
from engine import Engine, GenerationRequest, Message, Result, RunOptions, precheck, run


@pytest.fixture
def counted(monkeypatch) -> Counter:
    """Calls of the rules (validate) and of the prompt's tokenization (encode), counted."""
    calls: Counter = Counter()

    def counting(name: str, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(service, "validate", counting("validate", service.validate))
    monkeypatch.setattr(decoding, "encode", counting("encode", decoding.encode))
    return calls


@pytest.fixture
def engine(tiny_env) -> Engine:
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


REQUESTS = {
    "causal text": GenerationRequest(RunOptions(model="tiny-llama", max_new_tokens=4), text="the quick brown fox"),
    "chat": GenerationRequest(RunOptions(model="tiny-llama", max_new_tokens=4), messages=(Message("user", "hi"),)),
    "seq2seq": GenerationRequest(RunOptions(model="tiny-bart", max_new_tokens=4), text="the quick brown fox"),
    "labels": GenerationRequest(RunOptions(model="tiny-llama"), text="great service", candidates=("good", "bad")),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_a_prechecked_request_is_validated_once_and_tokenized_once(engine, counted, name):
    request = REQUESTS[name]
    engine.get(request.options.model, request.options.precision)  # loaded, as the app's warm-up leaves it
    precheck(request, engine)  # the validator, before the request queues
    result = run(request, engine)  # the handler
    assert isinstance(result, Result)
    assert counted == {"validate": 1, "encode": 1}


def test_a_request_without_precheck_is_validated_once_and_tokenized_once(engine, counted):
    request = REQUESTS["causal text"]
    run(request, engine)  # loads the model on the way
    assert counted == {"validate": 1, "encode": 1}


def test_an_evicted_model_is_tokenized_again_not_with_stale_ids(engine, counted):
    """A prompt tokenized at admission belongs to the model loaded then: after an eviction the run
    tokenizes for the model it loads, once."""
    request = REQUESTS["causal text"]
    engine.get("tiny-llama", "auto")
    precheck(request, engine)
    engine.models.clear()  # evicted between the validator and the handler
    assert isinstance(run(request, engine), Result)
    assert counted == {"validate": 1, "encode": 2}
