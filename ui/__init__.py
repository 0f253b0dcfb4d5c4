"""The Gradio UI over the engine and the installed tasks: layout, endpoints, controls, results,
history, the Lab, the MCP resources. Handlers are thin: the tasks build requests, the engine runs them."""

from .layout import build

__all__ = ["build"]
