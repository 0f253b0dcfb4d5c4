"""The Lab's runs (ui.benchmarks): the sweep's config and the frontier, on tiny registry models."""

from __future__ import annotations

import pytest

from engine import InputError, RunOptions
from ui import benchmarks


def test_lab_config_validation(tiny_env):
    options = RunOptions(model="tiny-llama", window=32)
    config = benchmarks.build_config(["128", 64, 64], True, 2, options)
    assert config.lengths == (64, 128) and config.settings.window == 32
    with pytest.raises(InputError, match="at least one"):
        benchmarks.build_config([], True, 2, options)
    with pytest.raises(InputError, match="decoder"):
        benchmarks.build_config([64], True, 2, RunOptions(model="tiny-marian"))


def test_the_lab_frontier_gives_a_plot_and_a_table(tiny_env):
    options = RunOptions(model="tiny-llama", precision="fp32")
    plot, table = benchmarks.run_frontier([160], [0.6], False, options)
    assert open(plot, "rb").read(4) == b"\x89PNG"
    assert list(table["pattern"]) == ["dense", "sliding_sinks", "quest", "block_topk"] * 2
    with pytest.raises(InputError, match="one length and one budget"):
        benchmarks.run_frontier([], [0.6], False, options)
    with pytest.raises(InputError, match="local decoder models"):
        benchmarks.run_frontier([160], [0.6], False, RunOptions(model="tiny-t5", precision="fp32"))
