"""The benchmark command's machinery on a tiny model: counts, speedup bookkeeping, outputs.
(The numbers themselves come from `python -m engine.bench`, not from tests.)"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from engine import ModelCache, SparseSettings
from engine.attention import PATTERNS, explicit_mask
from engine.bench import (
    SWEEP_COLUMNS,
    SweepConfig,
    _allowed_pairs,
    format_table,
    main,
    plot_sweep,
    sweep,
    write_outputs,
)


@pytest.mark.parametrize(("length", "window", "sinks"), [(10, 4, 2), (100, 16, 4), (64, 64, 4), (7, 512, 4)])
def test_allowed_pairs_counts_the_explicit_mask(length, window, sinks):
    settings = SparseSettings(window=window, sinks=sinks)
    pos = torch.arange(length)
    assert _allowed_pairs(settings, length) == int(explicit_mask(PATTERNS["sliding_sinks"], settings, pos, pos).sum())


def test_sweep_rows_speedups_and_outputs(tiny_env, tmp_path):
    cache = ModelCache(budget_mb=10_000, device=torch.device("cpu"))
    config = SweepConfig(
        model="tiny-llama",
        lengths=(64, 256),
        settings=SparseSettings(window=32, sinks=2, block_size=16),
        decode_tokens=3,
        repeats=1,
    )
    seen = []
    rows = sweep(config, cache, progress=lambda fraction, message: seen.append(fraction))
    assert [(r.length, r.mode) for r in rows] == [(64, "dense"), (64, "sparse"), (256, "dense"), (256, "sparse")]
    assert seen[0] == 0.0 and seen[-1] == 1.0
    dense, sparse = rows[2], rows[3]
    assert dense.density == 1.0 and dense.op_speedup is None
    assert 0 < sparse.density < 0.5 and sparse.flop_limit > 2
    assert sparse.op_speedup == pytest.approx(dense.op_prefill_ms / sparse.op_prefill_ms)
    assert sparse.model_prefill_ms > 0 and sparse.model_decode_tokens_per_s > 0 and sparse.model_peak_memory_mb > 0
    assert "op_speedup" in format_table(rows, SWEEP_COLUMNS).splitlines()[0]

    paths = write_outputs(rows, tmp_path, "attention", plot_sweep, {"model": "tiny-llama"})
    assert json.loads(paths[0].read_text())["rows"][3]["mode"] == "sparse"
    assert len(list(csv.DictReader(paths[1].open()))) == 4
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_cli_writes_files_and_rejects_unknown_model(tiny_env, tmp_path, capsys):
    argv = ["--model", "tiny-llama", "--lengths", "32,64", "--window", "16", "--repeats", "1", "--op-only"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "flop_limit" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention.csv", "attention.json", "attention.png"]
    assert main(["--model", "no-such-model", "--lengths", "32"]) == 2
