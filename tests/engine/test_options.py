"""The run options' one declaration drives validation and the CLI; settings are declared, validated
and documented once; the engine imports nothing from the tasks."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from engine import OPTIONS, AttentionConfigError, InputError, PrecisionError, RunOptions, SettingsError, options_from
from engine.__main__ import _parser, main
from engine.api.frontends import installed_tasks
from engine.api.options import OPTION_BY_NAME, check_options
from engine.attention.choice import SparseSettings
from engine.platform.settings import Settings, settings, settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_declaration_order_keeps_todays_api_parameters_first():
    names = [o.name for o in OPTIONS]
    assert names[:8] == ["model", "precision", "attention", "window", "sinks", "max_new_tokens", "truncate", "pattern"]
    assert {"temperature", "top_p", "seed", "repetition_penalty", "block_size"} <= set(names[8:])
    assert names == [f.name for f in fields(RunOptions)]


def test_every_option_is_complete_and_its_default_valid():
    for option in OPTIONS:
        assert option.help and option.type in (int, float, bool, str), option
        assert option.choices is not None or option.type in (bool, str) or option.minimum is not None, option
    check_options(RunOptions())  # the defaults pass the declared rules
    assert RunOptions().greedy and RunOptions().sparse == SparseSettings()


def test_front_end_values_are_coerced_then_checked():
    options = options_from({"window": 256.0, "seed": None, "temperature": 1, "truncate": True})
    assert options.window == 256 and isinstance(options.window, int) and options.temperature == 1.0
    assert options_from({"seed": ""}).seed is None and options_from({"seed": 7.0}).seed == 7
    with pytest.raises(AttentionConfigError, match=r"window must be a whole number \(got 2.5\)"):
        check_options(options_from({"window": 2.5}))


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"precision": "fp8"}, PrecisionError, "Unknown precision 'fp8'; choose one of auto, fp32"),
        ({"attention": "magic"}, InputError, "Unknown attention 'magic'"),
        ({"repetition_penalty": 3.0}, InputError, "repetition_penalty must be between 1 and 2"),
        ({"truncate": "yes"}, InputError, "truncate must be true or false"),
        ({"max_new_tokens": True}, InputError, "max_new_tokens must be a whole number"),
    ],
)
def test_one_rule_per_kind_of_value(values, error, message):
    with pytest.raises(error, match=re.escape(message)):
        check_options(RunOptions(**values))


def test_cli_offers_every_option_with_its_declared_default():
    run = _parser(installed_tasks())._subparsers._group_actions[0].choices["run"]
    by_dest = {action.dest: action for action in run._actions}
    for option in OPTIONS:
        action = by_dest[option.name]
        assert action.option_strings == ["--" + option.name.replace("_", "-")]
        assert action.default == option.default and option.help in action.help
    assert by_dest["pattern"].choices == OPTION_BY_NAME["pattern"].choices


def test_cli_rejects_out_of_range_options_in_one_line(capsys):
    assert main(["run", "--task", "dialogue", "--temperature", "9", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: temperature must be between 0 and 2 (got 9.0)."


def test_settings_are_validated_with_a_one_line_error(studio_env):
    studio_env("STUDIO_CONCURRENCY", "many")
    with pytest.raises(SettingsError, match=r"^STUDIO_CONCURRENCY='many': Input should be a valid integer"):
        settings()
    studio_env("STUDIO_CONCURRENCY", "2")
    studio_env("STUDIO_SPARSE_KERNEL", "cuda")
    with pytest.raises(SettingsError, match="STUDIO_SPARSE_KERNEL='cuda': Input should be 'blocked' or 'flex'"):
        settings()
    studio_env("STUDIO_SPARSE_KERNEL", "flex")
    assert settings().concurrency == 2 and settings().sparse_kernel == "flex"


def test_the_app_queue_follows_the_batch_capacity(studio_env):
    studio_env("STUDIO_MAX_BATCH", "4")
    assert (settings().app_concurrency, settings().app_max_queue) == (8, 32)
    studio_env("STUDIO_CONCURRENCY", "3")
    assert settings().app_concurrency == 3


def test_cli_reports_bad_settings_in_one_line(studio_env, capsys):
    studio_env("STUDIO_TIME_LIMIT_S", "-1")
    assert main(["settings"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: STUDIO_TIME_LIMIT_S='-1': Input should be greater than 0")


def _code_files() -> list[Path]:
    return [
        ROOT / "app.py",
        *(ROOT / "engine").rglob("*.py"),
        *(ROOT / "tasks").rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
    ]


def test_readme_documents_every_setting_and_every_studio_variable():
    readme = (ROOT / "README.md").read_text()
    for row in settings_table().splitlines()[2:]:
        assert row in readme, f"README settings table is out of date; paste `python -m engine settings` rows:\n{row}"
    used = {name for path in _code_files() for name in re.findall(r"STUDIO_[A-Z0-9_]+", path.read_text())}
    assert {info.alias for info in Settings.model_fields.values()} <= used
    missing = sorted(name for name in used if f"`{name}`" not in readme)
    assert not missing, f"STUDIO_* names used in code but not in the README: {missing}"


IMPORTS_OF_TASKS = """
import ast, sys
from pathlib import Path
for path in Path(sys.argv[1]).rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(n == "tasks" or n.startswith("tasks.") for n in names):
            print(path)
"""


def test_the_engine_imports_nothing_from_the_tasks():
    # In a fresh interpreter: CPython 3.11's ast.parse fails ("AST constructor recursion depth
    # mismatch") when another thread changes the recursion limit meanwhile, as torch's compiler
    # threads, left by earlier tests, do.
    found = subprocess.run([sys.executable, "-c", IMPORTS_OF_TASKS, str(ROOT / "engine")], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert found.stdout == ""


def test_readme_lists_each_precision_with_what_runs_it():
    from engine.models.precision_menu import PRECISION_CHOICES

    readme = (ROOT / "README.md").read_text()
    for choice in PRECISION_CHOICES:
        row = f"| `{choice.name}` | {choice.runs_on} |"
        assert row in readme, f"README precision table is out of date: {row}"
