"""Turn a ModelSpec + precision into a loaded model and tokenizer on the right device."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine import attention
from engine.models.embedded import BLOCKS, BUILDING, ProgressFn, ensure_converted, locate_packaged_file
from engine.models.gguf_blocks import load_blocks
from engine.models.packed import pack_gguf
from engine.models.precision import GGUF_ONLY, check_source, load_kwargs, quantize_after_load, weight_bytes
from engine.models.registry import ModelSpec, with_family
from engine.models.tokenizer_cache import load_tokenizer
from engine.platform.errors import ModelLoadError, PrecisionError
from engine.platform.memory import is_out_of_memory

# transformers reads a checkpoint's tensors on threads of its own unless told not to: those threads
# never give way to the engine thread as the load's own does (engine.runtime.aside), and stopped 4
# decoding streams for 70-150 ms at a time (`python -m engine.bench load`); read on the load's thread,
# the longest gap was 45 ms. Unset when nothing decodes, the load took about as long.
os.environ.setdefault("HF_DEACTIVATE_ASYNC_LOAD", "1")

_AUTO_CLASSES = {
    "causal": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "classifier": "AutoModelForSequenceClassification",
}


@dataclass
class LoadedModel:
    spec: ModelSpec  # family and context length always filled in
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    precision: str  # resolved, never "auto"
    device: torch.device
    footprint_bytes: int
    load_seconds: float
    parameters: int = 0  # those that multiply (not the embedding), as built, before quantization packs them
    decoder_start: int | None = None  # seq2seq models: the token their decoder starts from
    # Causal models' decode state, which the runtime above this layer attaches after loading
    # (engine.runtime.engine): its compiled steps (CompiledDecode) and its batches (ModelBatches).
    compiled: Any = None
    batches: Any = None

    @property
    def footprint_mb(self) -> float:
        return self.footprint_bytes / 2**20


def gguf_file(spec: ModelSpec) -> Path | None:
    """The GGUF file a model comes from (None: not from a GGUF)."""
    if spec.source == "embedded":
        return locate_packaged_file(spec.location)
    if spec.source == "gguf":
        path = Path(spec.location).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} for model {spec.name!r} does not exist; check the path.")
        return path
    return None


def resolve_location(spec: ModelSpec, progress: ProgressFn | None = None) -> str:
    """A directory or hub id that `from_pretrained` can read; GGUF sources go through the cache."""
    if (gguf := gguf_file(spec)) is not None:
        return str(ensure_converted(gguf, progress))
    if spec.source == "local":
        path = Path(spec.location).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"Model {spec.name!r}: {path} is not a model directory (no config.json); check the path."
            )
        return str(path)
    return spec.location


def _family_of(config) -> str:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "SequenceClassification" in archs:
        return "classifier"
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    return "causal"


def _context_length(config, tokenizer) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 512


def _hub_error(spec: ModelSpec, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"Cannot load {spec.name!r} ({spec.location}): it is not in the local Hugging Face cache and the hub "
        f"could not be reached ({type(exc).__name__}); download it where there is network, or register a "
        "local copy (local:/path/to/model)."
    )


def load_model(
    spec: ModelSpec, precision: str, device: torch.device, progress: ProgressFn | None = None
) -> LoadedModel:
    """Load at a resolved precision (never `auto`); the engine's model pool is the caller."""
    import transformers

    attention.register()
    check_source(precision, spec)
    start = time.perf_counter()
    location = resolve_location(spec, progress)
    if progress:
        progress(0.0, f"Loading {spec.name} at {precision}")
    try:
        config = transformers.AutoConfig.from_pretrained(location)
        tokenizer = load_tokenizer(location, config.model_type)
    except (OSError, ValueError) as exc:
        if spec.source == "hub":
            raise _hub_error(spec, exc) from exc
        raise ModelLoadError(f"Cannot read model {spec.name!r} at {location}: {exc}") from exc
    family = spec.family or _family_of(config)
    auto_class = getattr(transformers, _AUTO_CLASSES[family])
    kwargs = load_kwargs(precision, device)
    # transformers sets the process's default dtype to the model's while it builds: only a build in
    # another dtype can clash with a compile (BUILDING), so only such a build waits for one to end
    other_dtype = kwargs.get("dtype", torch.get_default_dtype()) != torch.get_default_dtype()
    try:
        with BUILDING if other_dtype else contextlib.nullcontext():
            model = auto_class.from_pretrained(location, attn_implementation=attention.IMPLEMENTATION, **kwargs)
    except ValueError as exc:
        if "attn_implementation" not in str(exc) and "attention" not in str(exc):
            raise ModelLoadError(f"Cannot load {spec.name!r} at {precision}: {exc}") from exc
        # Architectures without transformers' attention interface cannot switch kernels per request.
        raise ModelLoadError(
            f"Model {spec.name!r} ({config.model_type}) does not support pluggable attention in transformers, "
            "so dense/sparse switching is not possible for it; pick another model."
        ) from exc
    except (ImportError, RuntimeError) as exc:
        if is_out_of_memory(exc):
            raise  # the cache frees memory and says so (engine.models.pool)
        raise PrecisionError(
            f"Loading {spec.name!r} at {precision} on {device.type} failed ({exc}); try fp32 or bf16."
        ) from exc
    except OSError as exc:
        if spec.source == "hub":
            raise _hub_error(spec, exc) from exc
        raise ModelLoadError(f"Cannot load {spec.name!r} from {location}: {exc}") from exc
    if "device_map" not in kwargs:
        model.to(device)
    parameters = model.num_parameters(exclude_embeddings=True)  # a lookup multiplies nothing
    quantize_after_load(model, precision, device)
    if precision in GGUF_ONLY:  # check_source: a GGUF source, whose cache holds its blocks
        pack_gguf(model, load_blocks(Path(location) / BLOCKS), precision)
    model.eval()
    spec = with_family(spec, family, _context_length(config, tokenizer))
    if progress:
        progress(1.0, f"Loaded {spec.name}")
    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        precision=precision,
        device=device,
        footprint_bytes=weight_bytes(model),
        load_seconds=time.perf_counter() - start,
        parameters=parameters,
        decoder_start=_decoder_start(model) if family == "seq2seq" else None,
    )


def _decoder_start(model: Any) -> int:
    start_id = model.generation_config.decoder_start_token_id
    return start_id if start_id is not None else model.config.decoder_start_token_id
