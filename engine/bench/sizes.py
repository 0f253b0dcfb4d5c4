"""The registry's Space defaults at their real sizes, to measure here: this project's machines cannot
reach the hub, so each is built from its published configuration (the shape-deciding values of its
config.json on the hub, written out below) with random weights, into a directory the engine loads as
`local:DIR`. A step reads and computes what the real model's would, so speed, latency and memory
are the real model's; the text is noise, so the benches that use them measure no quality.

They take the embedded model's tokenizer files, copied (SmolLM2-360M's own tokenizer, so a 360M-size
model shares the embedded model's parsed tokenizer, engine.models.tokenizer_cache; for the others
its ids all lie inside their vocabularies): a prompt's token count differs a little from what their
own tokenizers would give, which moves nothing a step costs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, GenerationConfig

from engine.models.embedded import cache_root
from engine.models.loader import resolve_location
from engine.models.registry import DEFAULT_MODEL, get_spec
from engine.models.tokenizer_cache import tokenizer_files

SEED = 0


@dataclass(frozen=True)
class Size:
    """A registered model's architecture, as its hub config.json gives it."""

    model_type: str
    auto_class: str  # the transformers class that builds it from the config
    config: dict


# fmt: off
SIZES: dict[str, Size] = {
    "smollm2-360m-instruct": Size("llama", "AutoModelForCausalLM", {  # HuggingFaceTB/SmolLM2-360M-Instruct
        "hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
        "num_attention_heads": 15, "num_key_value_heads": 5, "vocab_size": 49152, "tie_word_embeddings": True,
        "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
        "bos_token_id": 1, "eos_token_id": 2}),
    "qwen2.5-coder-0.5b-instruct": Size("qwen2", "AutoModelForCausalLM", {  # Qwen/Qwen2.5-Coder-0.5B-Instruct
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,  # q, k, v with biases
        "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "bos_token_id": 1, "eos_token_id": 2}),
    "opus-mt-en-fr": Size("marian", "AutoModelForSeq2SeqLM", {  # Helsinki-NLP/opus-mt-en-fr
        "d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
        "encoder_attention_heads": 8, "decoder_attention_heads": 8, "vocab_size": 59514,
        "max_position_embeddings": 512, "activation_function": "swish", "scale_embedding": True,
        "pad_token_id": 59513, "decoder_start_token_id": 59513, "eos_token_id": 0, "forced_eos_token_id": 0}),
    "distilbart-cnn-12-6": Size("bart", "AutoModelForSeq2SeqLM", {  # sshleifer/distilbart-cnn-12-6
        "d_model": 1024, "encoder_layers": 12, "decoder_layers": 6, "encoder_ffn_dim": 4096, "decoder_ffn_dim": 4096,
        "encoder_attention_heads": 16, "decoder_attention_heads": 16, "vocab_size": 50264,
        "max_position_embeddings": 1024, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "decoder_start_token_id": 2, "forced_bos_token_id": 0, "forced_eos_token_id": 2}),
}
# fmt: on


def built(name: str) -> str:
    """`local:DIR` of the model `name` (a key of SIZES) at its real size with random weights, built
    once into the studio's cache."""
    size = SIZES[name]
    directory = cache_root() / "sizes" / name
    marker = directory / "studio-size.json"
    wanted = {
        "model_type": size.model_type,
        **size.config,
        "seed": SEED,
        "generation_config": True,
        "tokenizer": "copied",
    }
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        _build(size, directory)
        marker.write_text(json.dumps(wanted))
    return f"local:{directory}"


def _build(size: Size, directory: Path) -> None:
    config = AutoConfig.for_model(size.model_type, **size.config)
    torch.manual_seed(SEED)
    model = getattr(transformers, size.auto_class).from_config(config, dtype=torch.float32)  # the default dtype
    # Generation settings (BART's forced BOS) go to generation_config.json, as on the hub: a config keeps none
    model.generation_config.update(**{k: v for k, v in size.config.items() if hasattr(GenerationConfig(), k)})
    model.save_pretrained(directory)
    for path in tokenizer_files(Path(resolve_location(get_spec(DEFAULT_MODEL)))):
        shutil.copyfile(path, directory / path.name)
