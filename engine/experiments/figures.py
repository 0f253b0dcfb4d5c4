"""Rows of an experiment (dataclasses) as a table (pandas) and as figure panels (matplotlib)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

PanelT = TypeVar("PanelT")  # what a panel shows, e.g. (row field, subplot title)


def to_frame(rows: list, columns: list[str] | None = None) -> pd.DataFrame:
    """One row per dataclass, one column per field, or per name in `columns` (fields or properties);
    None becomes NaN in numeric columns."""
    frame = pd.DataFrame([asdict(r) for r in rows])
    if columns is None:
        return frame
    return pd.DataFrame({c: frame[c] if c in frame else [getattr(r, c) for r in rows] for c in columns})


@contextmanager
def figure_panels(
    path: Path, panels: list[PanelT], panel_size: tuple[float, float], columns: int | None = None
) -> Iterator[list[tuple[Any, PanelT]]]:
    """Subplots in rows of `columns` (default: one row), one (axes, panel) pair per panel, saved to
    `path` as a PNG when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, height = panel_size
    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    try:
        yield list(zip(axes.flatten(), panels, strict=False))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
