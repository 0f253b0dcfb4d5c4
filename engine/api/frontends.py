"""What command-line front ends share: run-option flags, and tasks plugged into the engine's CLI
without the engine importing them.

A task package registers `CliTask` objects under the entry-point group `transformer_studio.tasks`
(this project's `tasks` package does, in pyproject.toml); `python -m engine run --task NAME` finds
them there, the way simonw/llm finds its plugins.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

from engine.api.options import OPTION_BY_NAME, OPTIONS, RunOptions
from engine.api.request import GenerationRequest
from engine.platform.errors import StudioError

ENTRY_POINT_GROUP = "transformer_studio.tasks"


@dataclass(frozen=True)
class CliFlag:
    name: str  # --name on the command line, passed to `build` by this name
    default: str | None
    help: str


@dataclass(frozen=True)
class CliTask:
    name: str
    flags: tuple[CliFlag, ...]
    build: Callable[..., GenerationRequest]  # (text, options, **flags) -> request
    examples: list[list]  # the app's example rows; the first value is the text


def installed_tasks() -> dict[str, CliTask]:
    tasks = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        task = entry.load()
        tasks[task.name] = task
    return tasks


def build_request(
    tasks: dict[str, CliTask], name: str, text: str, options: RunOptions, flags: dict[str, str | None]
) -> GenerationRequest:
    if name not in tasks:
        raise StudioError(
            f"No task {name!r} is installed (entry points {ENTRY_POINT_GROUP!r}): run `pip install -e .`."
        )
    task = tasks[name]
    return task.build(text, options, **{flag.name: flags[flag.name] for flag in task.flags})


def add_option_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """One flag per run option (all, or `names`): --max-new-tokens for max_new_tokens, and so on."""
    for declared in OPTIONS if names is None else [OPTION_BY_NAME[name] for name in names]:
        flag = "--" + declared.name.replace("_", "-")
        if declared.type is bool:
            parser.add_argument(flag, action="store_true", help=declared.help)
        else:
            parser.add_argument(flag, type=declared.type, default=declared.default, choices=declared.choices,
                                help=f"{declared.help} (default: {declared.default})")  # fmt: skip
