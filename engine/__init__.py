"""Transformer Studio engine: load models at any precision, run requests with dense or sparse
attention, and measure them. Knows nothing of the UI."""

from .cache import ModelCache, default_cache
from .errors import (
    AttentionConfigError,
    ContextLengthError,
    InputError,
    ModelLoadError,
    PrecisionError,
    StudioError,
    UnknownModelError,
)
from .registry import DEFAULT_MODEL, ModelSpec, get_spec, list_models
from .service import Chunk, compare_results, run, stream_request, validate
from .types import (
    ATTENTION_MODES,
    PRECISIONS,
    Comparison,
    GenerationRequest,
    Message,
    Metrics,
    Result,
    Sampling,
    SparseSettings,
)

__all__ = [
    "ATTENTION_MODES",
    "DEFAULT_MODEL",
    "PRECISIONS",
    "AttentionConfigError",
    "Chunk",
    "Comparison",
    "ContextLengthError",
    "GenerationRequest",
    "InputError",
    "Message",
    "Metrics",
    "ModelCache",
    "ModelLoadError",
    "ModelSpec",
    "PrecisionError",
    "Result",
    "Sampling",
    "SparseSettings",
    "StudioError",
    "UnknownModelError",
    "compare_results",
    "default_cache",
    "get_spec",
    "list_models",
    "run",
    "stream_request",
    "validate",
]
