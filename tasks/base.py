"""A task, declared once: its inputs, the request they build, how its result renders, its examples.

The UI builds the task's tab and API endpoint from the declaration (ui/), and the engine's CLI
(`python -m engine run --task NAME`) reads the same object through the entry point
`transformer_studio.tasks`: `name`, `flags` (derived from the inputs) and `build`. Run options are
the engine's `RunOptions`, declared in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine import CliFlag, Comparison, GenerationRequest, Message, Result, RunOptions, labelled

# (inputs by name, text so far per run, the final result once it is in) -> what the output shows
Render = Callable[[Mapping[str, Any], Mapping[str, str], Result | Comparison | None], Any]


@dataclass(frozen=True)
class Input:
    """One input: the tab's widget, the endpoint's parameter and, except the first (the CLI's text
    argument), a CLI flag."""

    name: str  # the parameter's and the flag's name
    label: str  # the widget's label (the API lists it too)
    help: str  # one line: the endpoint's parameter doc (API page, MCP) and the flag's help
    default: Any = ""  # the widget's first value, which the API offers as the parameter's default
    choices: tuple[str, ...] | None = None  # a menu: radio buttons up to four choices, else a dropdown
    type: type = str  # str, or list for a chat history
    lines: int = 1
    placeholder: str | None = None
    flag: bool = True  # False: not on the command line, which passes the default (a chat history: none)
    flag_default: str | None = None  # the CLI's default where it differs from the page's

    @property
    def cli_default(self) -> Any:
        return self.default if self.flag_default is None else self.flag_default


@dataclass(frozen=True)
class Output:
    """What the tab shows the result in (and the endpoint returns first, before the metrics)."""

    kind: Literal["text", "label", "code", "chat"]
    label: str
    lines: int = 4
    language: str | None = None  # code: the first highlighting
    # code: the input whose value picks the highlighting, and how (gr.Code's name for the language)
    highlight_from: str | None = None
    highlight: Callable[[str], str | None] | None = None


def streamed_text(values: Mapping[str, Any], texts: Mapping[str, str], final: Result | Comparison | None) -> str:
    """The text so far; in a comparison each side's text under its label."""
    return labelled(dict(texts))


def reference_text(texts: Mapping[str, str]) -> str:
    """The requested run's text, or A's in a comparison (it streams first)."""
    return next(iter(texts.values()), "")


@dataclass(frozen=True)
class Tab:
    """How the page shows a task."""

    label: str  # the tab's title
    description: str  # one line under it
    action: str  # the run button's label
    order: int = 100  # tabs sort by this, then by task name (entry points come in no promised order)
    layout: Literal["form", "chat"] = "form"  # chat: a conversation (inputs message, history, then the rest)
    swap: tuple[str, str] | None = None  # two inputs side by side with a button that swaps them


@dataclass(frozen=True)
class Api:
    """How the API names and documents a task's endpoint."""

    name: str  # the endpoint: /name (and the MCP tool's name)
    summary: str  # its description
    returns: str  # what it returns, for its doc


@dataclass(frozen=True)
class Task:
    name: str  # the CLI's --task, and the registry's task name its models serve (see models_of)
    tab: Tab
    inputs: tuple[Input, ...]
    builder: Callable[..., GenerationRequest]  # (*inputs in declaration order, options) -> request
    output: Output
    api: Api
    render: Render = streamed_text
    examples: list[list] = field(default_factory=list)  # rows over the first inputs
    generates: bool = True  # False: it scores instead, so the sampling options and Stop do not apply
    map_builder: Callable[..., GenerationRequest] | None = None  # the request the attention map shows, if not builder's
    models_of: str | None = None  # the registry task whose models serve it (default: its own name)

    @property
    def model_task(self) -> str:
        return self.models_of or self.name

    @property
    def flags(self) -> tuple[CliFlag, ...]:
        """The CLI's flags: every input but the first, which is the CLI's text argument."""
        return tuple(CliFlag(i.name, i.cli_default, f"{self.name}: {i.help}") for i in self.inputs[1:] if i.flag)

    def build(self, text: str, options: RunOptions, **flags: Any) -> GenerationRequest:
        """The CLI's request: the text as the first input, the flags by name, the rest at their defaults."""
        values = {i.name: flags.get(i.name, i.cli_default) for i in self.inputs[1:]}
        return self.builder(text, *values.values(), options)


def message_text(content: object) -> str:
    """The text of a chat message: a string (API clients) or Gradio 6's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def split_at(history: list[dict], index: int | tuple[int, int]) -> tuple[list[dict], str]:
    """For retry / undo of the user message at `index` (Gradio may give (row, column)): the turns
    before it and its text."""
    row = index if isinstance(index, int) else index[0]
    return history[:row], message_text(history[row]["content"])


def instruct(system: str, user: str) -> tuple[Message, ...]:
    return (Message("system", system), Message("user", user))
