"""A result as files to keep and share: the API's JSON payload, a Markdown table, and for a
comparison its timed trials as CSV (the History tab exports its runs the same way)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

import pandas as pd

from engine.api.report import (
    Final,
    comparison_headers,
    comparison_line,
    comparison_rows,
    metrics_line,
    to_payload,
)
from engine.api.results import Comparison, Metrics


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def cells(row: list[Any]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in row) + " |"

    return "\n".join([cells(headers), cells(["---"] * len(headers)), *(cells(row) for row in rows)])


def as_json(final: Final) -> str:
    return json.dumps(to_payload(final), indent=2, ensure_ascii=False)


def as_markdown(final: Final) -> str:
    """The metrics line, then every metric (one run) or the comparison's table."""
    if isinstance(final, Comparison):
        return f"{comparison_line(final)}\n\n{markdown_table(comparison_headers(final), comparison_rows(final))}\n"
    measured = asdict(final.metrics)
    rows = [[f.name, measured[f.name]] for f in fields(Metrics) if measured[f.name] is not None]
    return f"{metrics_line(final)}\n\n{markdown_table(['metric', 'value'], rows)}\n"


def trials_csv(comparison: Comparison) -> str:
    """One row per timed trial and timing: A's and B's values and B/A."""
    rows = []
    for name in ("prefill", "ttft", "decode", "total"):
        timing = getattr(comparison, name)
        if timing is None:
            continue
        for trial, (a, b) in enumerate(zip(timing.a, timing.b, strict=True), start=1):
            rows.append({"timing": name, "trial": trial, "a": a, "b": b, "b_over_a": b / a if a else None})
    return pd.DataFrame(rows, columns=["timing", "trial", "a", "b", "b_over_a"]).to_csv(index=False)


def runs_markdown(runs: list[dict[str, str]]) -> str:
    """The History tab's runs as a Markdown table."""
    return markdown_table(["when", "task", "result"], [[r["when"], r["task"], r["result"]] for r in runs]) + "\n"
