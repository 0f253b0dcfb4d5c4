"""Tokenizers are parsed once for every model whose tokenizer files hold the same bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.models.tokenizer_cache import load_tokenizer, tokenizer_files
from engine.runtime.engine import Engine


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_model_at_a_second_precision_shares_its_tokenizer(tiny_env):
    engine = Engine(budget_mb=10_000, device=torch.device("cpu"))
    fp32, bf16 = engine.get("tiny-llama", "fp32"), engine.get("tiny-llama", "bf16")
    assert fp32.model is not bf16.model
    assert fp32.tokenizer is bf16.tokenizer
    assert fp32.tokenizer("the quick brown fox").input_ids == bf16.tokenizer("the quick brown fox").input_ids


def test_same_bytes_share_and_any_other_byte_does_not(tiny_dirs, tmp_path):
    llama = tiny_dirs["llama"]
    first = load_tokenizer(str(llama), "llama")
    twin = _copy(llama, tmp_path / "twin")
    (twin / "studio-size.json").write_text("{}")  # the studio's markers and the configs say nothing of it
    (twin / "config.json").write_text((twin / "config.json").read_text().replace("512", "1024"))
    assert load_tokenizer(str(twin), "llama") is first
    assert load_tokenizer(str(twin), "mistral") is not first  # the type can pick another tokenizer class
    other = _copy(llama, tmp_path / "other")
    template = other / "chat_template.jinja"
    assert template in tokenizer_files(other)
    template.write_text(template.read_text().replace("assistant:", "bot:"))
    changed = load_tokenizer(str(other), "llama")
    assert changed is not first and changed.chat_template != first.chat_template


def test_a_hub_model_shares_once_its_files_are_in_the_local_cache(tiny_dirs, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert load_tokenizer(str(tiny_dirs["llama"]), "llama") is not None
    snapshot = tmp_path / "models--studio--tiny" / "snapshots" / ("0" * 40)
    for path in tokenizer_files(tiny_dirs["llama"]):
        snapshot.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, snapshot / path.name)
    (tmp_path / "models--studio--tiny" / "refs").mkdir()
    (tmp_path / "models--studio--tiny" / "refs" / "main").write_text("0" * 40)
    assert load_tokenizer("studio/tiny", "llama") is load_tokenizer(str(tiny_dirs["llama"]), "llama")


def test_a_hub_model_not_in_the_cache_is_not_found_here(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OSError):
        load_tokenizer("studio/absent", "llama")
