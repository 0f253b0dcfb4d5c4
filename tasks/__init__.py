"""Tasks turn user inputs into engine requests and engine results into outputs. No torch here."""

from . import classification, code, dialogue, summarization, translation
from .base import RunOptions, TaskInfo

TASKS: dict[str, TaskInfo] = {
    module.INFO.name: module.INFO for module in (translation, summarization, dialogue, classification, code)
}

__all__ = ["TASKS", "RunOptions", "TaskInfo"]
