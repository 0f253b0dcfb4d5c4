"""Remote models: what a registry entry must say, that no request can name a server, how label
probabilities come from a server's top log-probabilities, and how control strings in user text are
broken before they are sent (no server needed here)."""

from __future__ import annotations

import re

import pytest

from engine import Message, UnknownModelError, get_spec, list_models
from engine.backends.openai_protocol import chat_messages, completion_prompt, label_scores
from engine.backends.user_text import GENERIC, JOINER, escape_controls
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
        (GOOD + 'tokenizer = ""\n', "tokenizer must name"),
        (GOOD.replace('"openai"', '"local"') + 'tokenizer = "x"\n', "tokenizer is for remote"),
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


# Control strings in user text (engine.backends.user_text)

CONTROLS = ["<|im_start|>", "<|eot_id|>", "<|end|>", "<｜begin▁of▁sentence｜>", "<s>", "</s>", "[INST]", "[/INST]",
            "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>"]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["Hello, world!", "if a < b and c > d: x = a | b", "<b>bold</b> <br/> <| spaced |> || <>", "[inst] 名前 🙂\n"],
)
def test_ordinary_text_is_sent_unchanged(text):
    assert escape_controls(text).encode() == text.encode()


@pytest.mark.parametrize("control", CONTROLS)
def test_every_common_control_string_is_broken_without_a_tokenizer(control):
    text = f"a{control}b{control}"
    broken = control[0] + JOINER + control[1:]
    assert escape_controls(text) == f"a{broken}b{broken}"
    assert not GENERIC.search(escape_controls(text)) and escape_controls(text).replace(JOINER, "") == text


def test_messages_and_prompts_are_sent_broken(tmp_path, studio_env):
    registry(tmp_path, studio_env, GOOD)
    spec = get_spec("r")
    sent = chat_messages(spec, (Message("system", "Be kind.</s>"), Message("user", "Hi<|im_end|>")))
    assert sent == [{"role": "system", "content": f"Be kind.<{JOINER}/s>"},
                    {"role": "user", "content": f"Hi<{JOINER}|im_end|>"}]  # fmt: skip
    assert completion_prompt(spec, "x<|endoftext|>") == f"x<{JOINER}|endoftext|>"


@pytest.mark.parametrize("named", ["tiny-llama", "directory"])
def test_a_named_tokenizers_special_tokens_exactly(named, tiny_registry, tiny_dirs, tmp_path, studio_env):
    """The tiny tokenizer's specials are <pad> <s> </s> <unk>: those are broken, and `<|im_start|>`,
    not one of them, is text the server reads as text already."""
    tokenizer = str(tiny_dirs["llama"]) if named == "directory" else named
    registry(tmp_path, studio_env, tiny_registry.read_text() + GOOD + f'tokenizer = "{tokenizer}"\n')
    sent = completion_prompt(get_spec("r"), "<s>Hi</s><|im_start|><pad>")
    assert sent == f"<{JOINER}s>Hi<{JOINER}/s><|im_start|><{JOINER}pad>"


def test_overlapping_control_strings_are_all_broken():
    controls = re.compile("(?=<\\|a|a\\|>)")  # "<|a" and "a|>" overlap in "<|a|>"
    assert escape_controls("<|a|>", controls) == f"<{JOINER}|a{JOINER}|>"


@pytest.mark.parametrize("tokenizer", ["no-such-model-or-directory", "r"])
def test_a_tokenizer_that_is_neither_a_local_model_nor_a_directory(tokenizer, tmp_path, studio_env):
    registry(tmp_path, studio_env, GOOD + f'tokenizer = "{tokenizer}"\n')
    with pytest.raises(UnknownModelError, match="names no local model"):
        completion_prompt(get_spec("r"), "Hi")
