"""Transformer Studio engine: load models at any precision, run requests with dense or sparse
attention, and measure them. Knows nothing of the UI or of the tasks."""

from engine.platform.settings import place_compiler_cache

place_compiler_cache()  # before anything below imports torch's compiler


from engine.api.events import Chunk
from engine.api.frontends import CliFlag, CliTask, installed_tasks
from engine.api.options import ATTENTION_MODES, OPTION_BY_NAME, OPTIONS, PRECISIONS, Option, RunOptions, options_from
from engine.api.report import (
    comparison_headers,
    comparison_line,
    comparison_rows,
    from_payload,
    labelled,
    metrics_line,
    timing_text,
    to_payload,
)
from engine.api.request import GenerationRequest, Message
from engine.api.results import Comparison, Metrics, Quality, Result, Timing
from engine.api.validation import check_labels, require_text, validate, validate_options
from engine.attention.choice import SparseSettings
from engine.attention.patterns import pattern_catalog
from engine.experiments.attention_map import MAP_TOKENS, AttentionMap
from engine.experiments.figures import to_frame
from engine.experiments.frontier import DENSITIES as FRONTIER_DENSITIES
from engine.experiments.frontier import FRONTIER_COLUMNS, frontier, plot_frontier
from engine.experiments.frontier import LENGTHS as FRONTIER_LENGTHS
from engine.experiments.statistics import compare_timing
from engine.experiments.sweep import (  # the tests of tasks read its verdict in words
    SWEEP_COLUMNS,
    SweepConfig,
    SweepRow,
    sweep,
)
from engine.models.defaults import TaskDefault, model_catalog, task_default
from engine.models.precision import resolve_precision
from engine.models.registry import DEFAULT_MODEL, ModelSpec, get_spec, list_models
from engine.platform import quiet_logs  # noqa: F401  (first: before transformers loads the libraries it quiets)
from engine.platform.errors import (
    AttentionConfigError,
    ContextLengthError,
    InputError,
    ModelLoadError,
    PrecisionError,
    StudioError,
    TimeLimitError,
    UnknownModelError,
)
from engine.platform.settings import SettingsError, settings
from engine.runtime.engine import Engine, default_engine
from engine.service import attention_map, precheck, run, stream_request
from engine.warmup import WarmUp

__all__ = [
    "ATTENTION_MODES",
    "DEFAULT_MODEL",
    "FRONTIER_COLUMNS",
    "FRONTIER_DENSITIES",
    "FRONTIER_LENGTHS",
    "MAP_TOKENS",
    "OPTIONS",
    "OPTION_BY_NAME",
    "PRECISIONS",
    "SWEEP_COLUMNS",
    "AttentionConfigError",
    "AttentionMap",
    "Chunk",
    "CliFlag",
    "CliTask",
    "Comparison",
    "ContextLengthError",
    "Engine",
    "GenerationRequest",
    "InputError",
    "Message",
    "Metrics",
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
    "SweepConfig",
    "SweepRow",
    "TaskDefault",
    "TimeLimitError",
    "Timing",
    "UnknownModelError",
    "WarmUp",
    "attention_map",
    "check_labels",
    "compare_timing",
    "comparison_headers",
    "comparison_line",
    "comparison_rows",
    "default_engine",
    "from_payload",
    "frontier",
    "get_spec",
    "installed_tasks",
    "labelled",
    "list_models",
    "metrics_line",
    "model_catalog",
    "options_from",
    "pattern_catalog",
    "plot_frontier",
    "precheck",
    "require_text",
    "resolve_precision",
    "run",
    "settings",
    "stream_request",
    "sweep",
    "task_default",
    "timing_text",
    "to_frame",
    "to_payload",
    "validate",
    "validate_options",
]
