"""Tiny randomly initialised models and tokenizers, built locally (never fetched)."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never fetch anything: hub lookups fail fast (set before transformers is imported).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# No background compiles while the suite runs (they would compete for the CPU with every timed
# test); the compiled decode path has its own tests, which compile on purpose.
os.environ.setdefault("STUDIO_COMPILE_DECODE", "0")

import pytest
import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a tiny tokenizer for tests",
    "translate summarize classify positive negative neutral code python",
    "le chat est sur la table das ist gut el perro",
] * 20


def build_tokenizer(directory: Path, chat: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tok.train_from_iterator(CORPUS, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    return fast


def _save(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory


def _tiny(tmp_root: Path, kind: str) -> Path:
    import transformers as tf

    directory = tmp_root / kind
    tokenizer = build_tokenizer(directory, chat=kind == "llama")
    vocab = len(tokenizer)
    common = {"vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    torch.manual_seed(0)
    llama = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        **common,
    }
    if kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**llama))
    elif kind == "llama-classifier":
        labels = {
            "num_labels": 2,
            "id2label": {0: "NEGATIVE", 1: "POSITIVE"},
            "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
        }
        model = tf.LlamaForSequenceClassification(tf.LlamaConfig(**llama, **labels))
    elif kind in ("marian", "bart"):
        config_class, model_class = {
            "marian": (tf.MarianConfig, tf.MarianMTModel),
            "bart": (tf.BartConfig, tf.BartForConditionalGeneration),
        }[kind]
        config = config_class(
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            max_position_embeddings=256,
            decoder_start_token_id=0 if kind == "marian" else 2,
            **common,
        )
        model = model_class(config)
    elif kind == "t5":
        config = tf.T5Config(
            d_model=64,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
            **{k: v for k, v in common.items() if k != "bos_token_id"},
        )
        model = tf.T5ForConditionalGeneration(config)
    else:
        raise ValueError(kind)
    return _save(model, directory)


TINY_KINDS = ("llama", "marian", "bart", "t5", "llama-classifier")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: _tiny(root, kind) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def tiny_registry(tiny_dirs, tmp_path_factory) -> Path:
    """A STUDIO_MODELS file registering every tiny model by name (tiny-llama, tiny-marian, ...)."""
    families = {"llama": "causal", "marian": "seq2seq", "bart": "seq2seq", "t5": "seq2seq"}
    families["llama-classifier"] = "classifier"
    lines = []
    for kind, path in tiny_dirs.items():
        lines += [
            "[[model]]",
            f'name = "tiny-{kind}"',
            'source = "local"',
            f'location = "{path}"',
            f'family = "{families[kind]}"',
        ]
        if kind == "marian":
            lines.append('languages = ["en-fr"]')
        if kind == "t5":
            lines.append("text_prefixes = true")
        lines.append("")
    path = tmp_path_factory.mktemp("registry") / "models.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(autouse=True)
def fresh_settings():
    """Settings are read once per process; a test that changes STUDIO_* variables (`studio_env`) gets
    them re-read, and the next test starts from the restored environment (this runs after monkeypatch's undo)."""
    from engine.platform.machine import machine_limits
    from engine.platform.settings import settings

    settings.cache_clear()
    machine_limits.cache_clear()  # kept beside the cache that the settings name
    yield
    settings.cache_clear()
    machine_limits.cache_clear()


@pytest.fixture(autouse=True)
def default_dtype_kept():
    """transformers sets torch's default dtype process-wide while it builds a model: a test (or a
    thread it started) that leaves another one behind changes the tensors of every later test, and
    the global state every later compiled step is traced under."""
    before = torch.get_default_dtype()
    yield
    if (after := torch.get_default_dtype()) != before:
        torch.set_default_dtype(before)
        pytest.fail(f"torch's default dtype was left at {after} (it was {before})")


@pytest.fixture
def studio_env(monkeypatch):
    """Set a STUDIO_* variable for this test and re-read the settings."""
    from engine.platform.settings import settings

    def set_variable(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        settings.cache_clear()

    return set_variable


@pytest.fixture
def tiny_env(tiny_registry, studio_env):
    studio_env("STUDIO_MODELS", str(tiny_registry))
    return tiny_registry
