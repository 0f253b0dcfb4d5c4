"""Code generation: asks for one fenced block and extracts it. Generated code is never run."""

from __future__ import annotations

import re

from engine import GenerationRequest, InputError, RunOptions, require_text
from engine.api.frontends import CliFlag, CliTask

from .base import TaskInfo, instruct

LANGUAGES = ("python", "javascript", "typescript", "rust", "go", "c", "cpp", "java", "bash", "sql")

INFO = TaskInfo(
    name="code",
    label="Code generation",
    description="Write code from a description (shown, never executed).",
    examples=[["Write a function that returns the sum of a list of numbers.", "python"]],
)

_FENCE = re.compile(r"```[\w+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


# gr.Code highlights these under other names, and some not at all (None: plain text).
_HIGHLIGHT = {"bash": "shell", "rust": None, "go": None, "java": None}


def highlight_language(language: str) -> str | None:
    return _HIGHLIGHT.get(language, language)


def build_request(prompt: str, language: str, options: RunOptions) -> GenerationRequest:
    require_text(prompt, "description")
    if language not in LANGUAGES:
        raise InputError(f"Unknown language {language!r}; choose one of {', '.join(LANGUAGES)}.")
    messages = instruct(
        f"You are an expert {language} programmer. Reply with one {language} code block and nothing else.",
        prompt,
    )
    return GenerationRequest(options, messages=messages)


CLI = CliTask(
    INFO.name,
    (CliFlag("language", "python", "code: programming language"),),
    lambda text, options, language: build_request(text, language, options),
)


def extract_code(text: str) -> str:
    """The first fenced block (even if unterminated while streaming), else the text itself."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip("\n")
