from __future__ import annotations

import pytest

from engine import DEFAULT_MODEL, UnknownModelError, get_spec, list_models


def test_default_is_the_embedded_model():
    spec = get_spec(DEFAULT_MODEL)
    assert spec.source == "embedded" and spec.family == "causal" and spec.context_length == 8192


def test_user_file_adds_and_replaces_models(tmp_path, studio_env):
    path = tmp_path / "models.toml"
    path.write_text(
        '[[model]]\nname = "mine"\nsource = "local"\nlocation = "/x"\nfamily = "seq2seq"\ntasks = ["translation"]\n'
    )
    studio_env("STUDIO_MODELS", str(path))
    assert get_spec("mine").tasks == ("translation",)
    assert "mine" in [s.name for s in list_models("translation")]
    assert "mine" not in [s.name for s in list_models("dialogue")]


def test_bad_user_file_is_a_clear_error(tmp_path, studio_env):
    path = tmp_path / "models.toml"
    path.write_text('[[model]]\nname = "x"\nsource = "ftp"\n')
    studio_env("STUDIO_MODELS", str(path))
    with pytest.raises(UnknownModelError, match="Bad entry"):
        list_models()


def test_prefixed_names_and_unknown_names():
    assert get_spec("hub:org/model").source == "hub"
    assert get_spec("local:/some/dir").location == "/some/dir"
    with pytest.raises(UnknownModelError, match="Known models"):
        get_spec("not-a-model")


def test_each_task_starts_on_its_best_model_that_loads_here(tmp_path, studio_env, tiny_dirs):
    """Registry order among the models `best_for` a task; one that cannot load here is passed over,
    and said so; offline, a hub model that is not downloaded cannot load."""
    from engine.models.defaults import task_default

    path = tmp_path / "models.toml"
    path.write_text(f"""
[[model]]
name = "missing-gguf"
source = "gguf"
location = "{tmp_path}/nothing.gguf"
best_for = ["dialogue"]

[[model]]
name = "tiny-chat"
source = "local"
location = "{tiny_dirs["llama"]}"
best_for = ["dialogue", "code"]
""")
    studio_env("STUDIO_MODELS", str(path))
    dialogue = task_default("dialogue")
    assert dialogue.model == "tiny-chat" and "best registered model for dialogue" in dialogue.reason
    assert task_default("code").model == "tiny-chat"
    translation = task_default("translation")  # opus-mt-en-fr is best for it: not downloaded, offline here
    assert translation.model == DEFAULT_MODEL
    assert "opus-mt-en-fr (not downloaded, and the hub is unreachable)" in translation.reason
