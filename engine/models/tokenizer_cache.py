"""Tokenizers shared by what they are made of: models whose tokenizer files hold the same bytes (one
model at a second precision; SmolLM2's sizes, which share one tokenizer) share one parsed tokenizer.

Parsing is the one part of a load that no thread can slice: tokenizers' `Tokenizer.from_file` holds
the GIL for the whole parse (~140 ms for SmolLM2's 3.5 MB `tokenizer.json` on a 2-core EPYC), so every
stream decoding meanwhile waits that long for its next token (`python -m engine.bench load`). Reading
and hashing the files releases it.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path
from typing import Any

# A model's own files, which say nothing of its tokenizer: the rest of a model directory is
# what AutoTokenizer may read (or harmless to compare: a README that differs only loses the sharing).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx", ".ckpt")
_MODEL_FILES = ("config.json", "generation_config.json")
_MARKER_PREFIX = "studio-"  # the studio's own markers (engine.models.embedded, engine.bench.sizes)

_shared: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()  # freed with its last model
_lock = threading.Lock()


def tokenizer_files(directory: Path) -> list[Path]:
    """The files of a model directory that make its tokenizer: every top-level file but the weights,
    the model's configs and the studio's markers."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_file()
        and not path.name.endswith(_WEIGHT_SUFFIXES)
        and path.name not in _MODEL_FILES
        and not path.name.startswith(_MARKER_PREFIX)
    )


def load_tokenizer(location: str, model_type: str) -> Any:
    """`AutoTokenizer.from_pretrained(location)`, parsed once for every model whose tokenizer is the same."""
    with _lock:  # two loads of one tokenizer at once: the second finds the first's
        key = _key(location, model_type)
        if key is not None and (tokenizer := _shared.get(key)) is not None:
            return tokenizer
        tokenizer = _parse(location)
        if (key := key or _key(location, model_type)) is not None:  # a hub model's files are cached by now
            _shared[key] = tokenizer
        return tokenizer


def _parse(location: str) -> Any:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(location)
    if getattr(tokenizer, "pad_token_id", None) is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batches pad; set once, before anyone shares it
    return tokenizer


def _key(location: str, model_type: str) -> str | None:
    """What a tokenizer is made of: its files' names and bytes, and the model type (which picks the
    tokenizer's class when its config names none); None while its files are not on this machine."""
    if (directory := _local_directory(location)) is None:
        return None
    digest = hashlib.sha256(model_type.encode())
    for path in tokenizer_files(directory):
        digest.update(f"\0{path.name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _local_directory(location: str) -> Path | None:
    """The directory holding a model's files: itself, or a hub model's snapshot in the local cache
    (None until its first load has put it there)."""
    if Path(location).is_dir():
        return Path(location)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(location, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError):
        return None
