"""Benchmark rows (dataclasses) out: the printed table, the JSON / CSV / PNG files, the machine's description."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from engine.bench.precision import PrecisionRow
from engine.experiments.figures import figure_panels, to_frame
from engine.experiments.sweep import SweepRow
from engine.platform.machine import cpu_name


def _cell(value: Any) -> str:
    if pd.isna(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(rows: list, columns: list[str] | None = None) -> str:
    """A plain-text table of dataclass rows (all fields, or `columns`), right-aligned, two spaces apart."""
    if not rows:
        return "(no rows)"
    cells = to_frame(rows, columns).astype(object).map(_cell)
    # pandas puts one space between columns; one more character of width for all but the first makes it two.
    widths = {c: max(len(c), cells[c].str.len().max()) + (i > 0) for i, c in enumerate(cells.columns)}
    return cells.to_string(index=False, col_space=widths)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of a few latencies: a value that was measured."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def plot_sweep(rows: list[SweepRow], path: Path) -> None:
    """Speed vs sequence length: attention op and whole-model prefill, dense and sparse, log-log."""
    panels = [
        ("op_prefill_ms", "attention op, one layer (ms)"),
        ("model_prefill_ms", "whole-model prefill (ms)"),
        ("model_decode_tokens_per_s", "whole-model decode (tokens/s)"),
    ]
    lengths = sorted({r.length for r in rows})
    with figure_panels(path, panels, (5, 4)) as pairs:
        for ax, (column, title) in pairs:
            for precision in dict.fromkeys(r.precision for r in rows):
                for mode, style in (("dense", "o-"), ("sparse", "s--")):
                    pts = [
                        (r.length, getattr(r, column))
                        for r in rows
                        if r.precision == precision and r.mode == mode and getattr(r, column) is not None
                    ]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), style, label=f"{mode} {precision}")
            ax.set(title=title, xlabel="sequence length (tokens)", yscale="log" if column.endswith("_ms") else "linear")
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths, [str(n) for n in lengths])
            ax.minorticks_off()
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend()


def plot_precisions(rows: list[PrecisionRow], path: Path) -> None:
    names = [r.precision for r in rows]
    panels = [("decode_tokens_per_s", "decode tokens/s"), ("prefill_ms", "prefill ms"), ("footprint_mb", "MB")]
    with figure_panels(path, panels, (4.5, 3.5)) as pairs:
        for ax, (column, title) in pairs:
            ax.bar(names, [getattr(r, column) or 0 for r in rows])
            ax.set_title(title)


def write_outputs(rows: list, out: Path, stem: str, plot: Callable[[list, Path], None], meta: dict) -> list[Path]:
    """`stem`.json (meta and rows), `stem`.csv (rows) and `stem`.png (the plot) in `out`; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.png"]
    # JSON from the dataclasses themselves: None stays null and floats keep every digit.
    paths[0].write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    to_frame(rows).to_csv(paths[1], index=False, lineterminator="\r\n")  # CRLF, as the csv module writes
    plot(rows, paths[2])
    return paths


def machine() -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_name()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
