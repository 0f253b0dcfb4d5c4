"""Tasks turn user inputs into engine requests and engine results into outputs. No torch here.

Each task is one module declaring a `TASK` (tasks.base.Task), registered under the entry-point group
`transformer_studio.tasks` in pyproject.toml; the UI and the engine's CLI find tasks there.
"""

from .base import Api, Input, Output, Tab, Task

__all__ = ["Api", "Input", "Output", "Tab", "Task"]
