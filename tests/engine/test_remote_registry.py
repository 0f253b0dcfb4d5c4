"""Remote models: what a registry entry must say, that no request can name a server, and how label
probabilities come from a server's top log-probabilities (no server needed here)."""

from __future__ import annotations

import re

import pytest

from engine import UnknownModelError, get_spec, list_models
from engine.backends.openai_protocol import label_scores
from engine.platform.errors import RemoteError

GOOD = '[[model]]\nname = "r"\nsource = "openai"\nlocation = "http://127.0.0.1:8080/v1"\nserved_name = "m"\n'


def registry(tmp_path, studio_env, text: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    studio_env("STUDIO_MODELS", str(path))


def test_a_remote_entry_is_a_chat_model_for_every_task(tmp_path, studio_env):
    registry(tmp_path, studio_env, GOOD)
    spec = get_spec("r")
    assert spec.remote and spec.family == "causal" and spec.served_name == "m"
    assert "r" in [s.name for s in list_models("classification")]


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        (GOOD.replace("http://127.0.0.1:8080/v1", "127.0.0.1:8080"), "base URL"),
        (GOOD.replace('served_name = "m"\n', ""), "served_name"),
        (GOOD + 'family = "seq2seq"\n', "chat (causal)"),
    ],
)
def test_bad_remote_entries_say_what_to_fix(tmp_path, studio_env, entry, complaint):
    registry(tmp_path, studio_env, entry)
    with pytest.raises(UnknownModelError, match=re.escape(complaint)):
        get_spec("r")


@pytest.mark.parametrize("name", ["openai:http://example.com/v1", "http://example.com/v1"])
def test_no_request_can_name_a_server(name):
    with pytest.raises(UnknownModelError):
        get_spec(name)


def test_label_scores_from_first_token_logprobs():
    top = {"Positive": -1.0, " positive": -2.0, "The": -0.5, "Neg": -3.0, "ne": -1.5, "N": -1.0}
    scores = label_scores(top, ("positive", "negative", "neutral"))
    # "ne" begins two labels and "N" is one letter: neither counts; "The" begins none
    mass = {"positive": 2.718**-1 + 2.718**-2, "negative": 2.718**-3, "neutral": 0.0}
    total = sum(mass.values())
    assert scores == pytest.approx({k: v / total for k, v in mass.items()}, rel=1e-3)


def test_label_scores_with_no_label_among_the_top_tokens():
    with pytest.raises(RemoteError, match="None of the labels"):
        label_scores({"The": -0.1, "I": -2.0}, ("positive", "negative"))
