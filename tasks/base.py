"""What every task shares: its metadata and prompt helpers. Run options are the engine's `RunOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import Message


@dataclass(frozen=True)
class TaskInfo:
    name: str  # the registry's task name: models list the tasks they serve
    label: str  # the tab's title
    description: str  # one line under the tab's title
    examples: list[list] = field(default_factory=list)
    generates: bool = True  # False: it scores instead, so the sampling options do not apply


def instruct(system: str, user: str) -> tuple[Message, ...]:
    return (Message("system", system), Message("user", user))
