"""Transformer Studio engine: load models at any precision, run requests with dense or sparse
attention, and measure them. Knows nothing of the UI or of the tasks."""

from . import quiet_logs  # noqa: F401  (first: before transformers loads the libraries it quiets)
from .attention_map import MAP_TOKENS, AttentionMap, attention_map
from .cache import ModelCache, default_cache
from .errors import (
    AttentionConfigError,
    ContextLengthError,
    InputError,
    ModelLoadError,
    PrecisionError,
    StudioError,
    TimeLimitError,
    UnknownModelError,
)
from .options import (
    ATTENTION_MODES,
    DEFAULT_MODEL,
    OPTIONS,
    PRECISIONS,
    Option,
    RunOptions,
    SparseSettings,
    options_from,
)
from .registry import ModelSpec, get_spec, list_models
from .service import Chunk, precheck, run, stream_request
from .settings import SettingsError
from .types import Comparison, GenerationRequest, Message, Metrics, Quality, Result, Timing
from .validation import check_labels, require_text, validate, validate_options
from .attention.patterns import pattern_catalog
from .compare import compare_timing as compare_timing  # the tests of tasks read its verdict in words
from .defaults import TaskDefault, model_catalog, task_default
from .frontends import CliFlag, CliTask, installed_tasks
from .options import OPTION_BY_NAME
from .precision import resolve_precision
from .report import (
    comparison_headers,
    comparison_line,
    comparison_rows,
    from_payload,
    labelled,
    metrics_line,
    timing_text,
    to_payload,
)
from .settings import settings
from .warmup import WarmUp

__all__ = [
    "OPTION_BY_NAME",
    "CliFlag",
    "CliTask",
    "TaskDefault",
    "WarmUp",
    "comparison_headers",
    "comparison_line",
    "comparison_rows",
    "from_payload",
    "installed_tasks",
    "labelled",
    "metrics_line",
    "model_catalog",
    "pattern_catalog",
    "resolve_precision",
    "settings",
    "task_default",
    "timing_text",
    "to_payload",
    "ATTENTION_MODES",
    "DEFAULT_MODEL",
    "MAP_TOKENS",
    "OPTIONS",
    "PRECISIONS",
    "AttentionConfigError",
    "AttentionMap",
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
    "Option",
    "PrecisionError",
    "Quality",
    "Result",
    "RunOptions",
    "SettingsError",
    "SparseSettings",
    "StudioError",
    "TimeLimitError",
    "Timing",
    "UnknownModelError",
    "attention_map",
    "check_labels",
    "default_cache",
    "get_spec",
    "list_models",
    "options_from",
    "precheck",
    "require_text",
    "run",
    "stream_request",
    "validate",
    "validate_options",
]
