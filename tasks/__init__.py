"""Tasks turn user inputs into engine requests and engine results into outputs. No torch here."""

from .base import TaskInfo

__all__ = ["TaskInfo"]
