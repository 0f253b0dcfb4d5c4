"""MCP resources (and plain GET-like API calls): the model registry, the patterns, the last Lab run."""

from __future__ import annotations

import json

import gradio as gr

from engine import model_catalog, pattern_catalog

from .benchmarks import last_benchmark as last_run


@gr.mcp.resource(
    "studio://models",
    "The model registry: name, family, source, tasks, what each is good for, and each task's default here.",
    "application/json",
)
def models() -> str:
    """The model registry, as JSON."""
    return json.dumps(model_catalog(), indent=1)


@gr.mcp.resource(
    "studio://patterns",
    "The sparse attention patterns: what each keeps, by position or by content.",
    "application/json",
)
def patterns() -> str:
    """The sparse attention patterns, as JSON."""
    return json.dumps(pattern_catalog(), indent=1)


@gr.mcp.resource(
    "studio://benchmark/last",
    "The last Lab benchmark (sweep or frontier) this server ran, with its rows.",
    "application/json",
)
def last_benchmark() -> str:
    """The last Lab benchmark, as JSON (an empty object before any)."""
    return json.dumps(last_run(), indent=1, default=str)


def serve_resources() -> None:
    """Inside the Blocks: each resource an endpoint named after it."""
    for resource in (models, patterns, last_benchmark):
        gr.api(resource, api_name=resource.__name__, queue=False)
