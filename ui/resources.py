"""MCP resources (and plain GET-like API calls): the model registry, the patterns, the last Lab run,
each as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from engine import model_catalog, pattern_catalog

from .benchmarks import last_benchmark

# (endpoint name, MCP URI, what the MCP client reads about it, the endpoint's doc, what it reads)
RESOURCES: tuple[tuple[str, str, str, str, Callable[[], Any]], ...] = (
    ("models", "studio://models",
     "The model registry: name, family, source, tasks, what each is good for, and each task's default here.",
     "The model registry, as JSON.", model_catalog),
    ("patterns", "studio://patterns", "The sparse attention patterns: what each keeps, by position or by content.",
     "The sparse attention patterns, as JSON.", pattern_catalog),
    ("last_benchmark", "studio://benchmark/last",
     "The last Lab benchmark (sweep or frontier) this server ran, with its rows.",
     "The last Lab benchmark, as JSON (an empty object before any).", last_benchmark),
)  # fmt: skip


def _resource(name: str, uri: str, description: str, doc: str, read: Callable[[], Any]) -> Callable[[], str]:
    def resource() -> str:
        return json.dumps(read(), indent=1, default=str)

    resource.__name__ = resource.__qualname__ = name
    resource.__doc__ = doc
    return gr.mcp.resource(uri, description, "application/json")(resource)


def serve_resources() -> None:
    """Inside the Blocks: each resource an endpoint named after it."""
    for name, *declared in RESOURCES:
        gr.api(_resource(name, *declared), api_name=name, queue=False)
