"""Which model each task starts on: the best registered model for it that can load here (a hub
model when it is downloaded or the hub answers; the embedded model offline), and why."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from engine.models.registry import DEFAULT_MODEL, TASKS, ModelSpec, list_models


@dataclass(frozen=True)
class TaskDefault:
    model: str
    reason: str  # one sentence the UI shows beside the model menu


def task_default(task: str) -> TaskDefault:
    """The first model registered as `best_for` the task (registry order) that can load here, else
    the embedded default, saying what was passed over."""
    passed_over = []
    for spec in list_models(task):
        if task not in spec.best_for:
            continue
        if (why_not := _why_not_loadable(spec)) is None:
            return TaskDefault(spec.name, f"picked as the best registered model for {task} that loads here")
        passed_over.append(f"{spec.name} {why_not}")
    reason = (
        f"the embedded model, which always loads; passed over: {', '.join(passed_over)}"
        if passed_over
        else ("the embedded model: no other model is registered as best for this task")
    )
    return TaskDefault(DEFAULT_MODEL, reason)


def _why_not_loadable(spec: ModelSpec) -> str | None:
    """None when the model can load here (a remote one: its operator registered it, so it is trusted)."""
    if spec.source == "hub":
        return None if _downloaded(spec.location) or hub_reachable() else "(not downloaded, and the hub is unreachable)"
    if spec.source in ("local", "gguf") and not Path(spec.location).expanduser().exists():
        return f"(nothing at {spec.location})"
    return None


def _downloaded(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


@functools.cache  # asked once per process: a page's defaults do not change while it is served
def hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=1.5).close()
    except OSError:
        return False
    return True


def model_catalog() -> list[dict]:
    """Every registered model: what it is, what it serves, and the tasks it is the default of here."""
    defaults = {task: task_default(task).model for task in TASKS}
    return [
        {"name": spec.name, "family": spec.family, "source": spec.source, "tasks": spec.tasks,
         "description": spec.description, "default_for": [task for task, model in defaults.items() if model == spec.name]}
        for spec in list_models()
    ]  # fmt: skip
