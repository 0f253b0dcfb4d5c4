"""A new task is one module plus its entry point: installed, it has a tab, an API endpoint with
every run option, and a CLI task with its flags, and nothing else in the project changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client
from ports import free_port

from engine import OPTIONS, WarmUp, installed_tasks

EXTRA = Path(__file__).parent / "extra_task"


@pytest.fixture
def shout_installed(tmp_path, monkeypatch, tiny_env):
    """The package `studio-extra` installed: its metadata on the path registers studio_shout:TASK."""
    info = tmp_path / "studio_extra-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: studio-extra\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[transformer_studio.tasks]\nshout = studio_shout:TASK\n")
    for path in (tmp_path, EXTRA):
        monkeypatch.syspath_prepend(str(path))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]))
    return installed_tasks()


def test_an_installed_task_gets_a_tab_and_an_endpoint(shout_installed):
    from ui import build

    assert {"translation", "summarization", "dialogue", "classification", "code", "shout"} <= set(shout_installed)
    demo = build(shout_installed, WarmUp("tiny-llama"))
    tabs = [block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)]
    assert tabs[-3:] == ["Shout", "Lab", "History"]  # after the project's own tasks (their tabs' order)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/shout"]
        assert [p["parameter_name"] for p in endpoint["parameters"]] == ["text", "times"] + [o.name for o in OPTIONS]
        text, metrics = client.predict("hello", "3", model="tiny-llama", max_new_tokens=3, api_name="/shout")
        assert isinstance(text, str) and metrics["new_tokens"] >= 1 and metrics["input_tokens"] > 1
    finally:
        demo.close()


def test_an_installed_task_takes_its_flags_on_the_cli(shout_installed):
    """`python -m engine run --task shout --times 9`: the flag reaches the task's request builder."""
    command = [sys.executable, "-m", "engine", "run", "--task", "shout", "--times", "9", "hi"]
    done = subprocess.run(command, cwd=EXTRA.parents[2], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "times must be a whole number from 1 to 5 (got '9')" in done.stderr
