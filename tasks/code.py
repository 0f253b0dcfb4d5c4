"""Code generation: asks for one fenced block and extracts it. Generated code is never run."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine import Comparison, GenerationRequest, InputError, Result, RunOptions, require_text

from .base import Api, Input, Output, Tab, Task, instruct, reference_text

LANGUAGES = ("python", "javascript", "typescript", "rust", "go", "c", "cpp", "java", "bash", "sql")

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


def extract_code(text: str) -> str:
    """The first fenced block (even if unterminated while streaming), else the text itself."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip("\n")


def code_of(values: Mapping[str, Any], texts: Mapping[str, str], final: Result | Comparison | None) -> str:
    """The code so far (A's, in a comparison)."""
    return extract_code(reference_text(texts))


TASK = Task(
    name="code",
    tab=Tab("Code generation", "Write code from a description (shown, never executed).", "Generate", 50),
    inputs=(
        Input("prompt", "Describe the code", "what the code should do", lines=3),
        Input("language", "Language", f"programming language ({', '.join(LANGUAGES)})", "python", LANGUAGES),
    ),
    builder=build_request,
    output=Output(
        "code", "Code (never executed)", language="python", highlight_from="language", highlight=highlight_language
    ),
    api=Api(
        "generate_code",
        "Generate code from a description. The code is returned, never executed by the server.",
        "the code (A's, in a comparison) and the measured metrics as JSON",
    ),
    render=code_of,
    examples=[["Write a function that returns the sum of a list of numbers.", "python"]],
)
