"""Engine results -> what the UI shows beyond the engine's own formatters (engine.report): the
comparison's plot and table frame, and the streamed reference text. Typed in, no string keys."""

from __future__ import annotations

import statistics

import pandas as pd
from matplotlib.figure import Figure

from engine import Comparison
from engine.report import comparison_headers, comparison_rows

PHASES = (("prefill", "prefill"), ("first token", "ttft"), ("per decode token", "decode"), ("total", "total"))


def comparison_table(comparison: Comparison) -> pd.DataFrame:
    return pd.DataFrame(comparison_rows(comparison), columns=comparison_headers(comparison))


def comparison_figure(comparison: Comparison) -> Figure:
    """Milliseconds per phase, A next to B: the median over the timed trials, the error bar spanning
    the fastest to the slowest trial (log scale: a token's milliseconds sit next to a whole request's)."""
    figure = Figure(figsize=(8, 3.4), layout="constrained")
    axes = figure.add_subplot()
    phases = [(title, timing) for title, key in PHASES if (timing := getattr(comparison, key)) is not None]
    width = 0.38
    for offset, (side, label) in ((-width / 2, ("a", comparison.a_label)), (width / 2, ("b", comparison.b_label))):
        medians, below, above = [], [], []
        for title, timing in phases:
            values = getattr(timing, side)
            if title == "per decode token":
                values = [1000 / v for v in values]  # tokens/s -> ms per token, so every bar is a time
            middle = statistics.median(values)
            medians.append(middle)
            below.append(middle - min(values))
            above.append(max(values) - middle)
        positions = [i + offset for i in range(len(phases))]
        axes.bar(positions, medians, width, yerr=[below, above], capsize=4, label=f"{side.upper()}: {label}")
    trials = comparison.total.trials
    axes.set_xticks(range(len(phases)), [title for title, _ in phases])
    axes.set(ylabel="ms (log)", yscale="log", title=f"Median of {trials} trial{'s' * (trials > 1)}; bars: min–max")
    axes.legend()
    return figure


def reference_text(texts: dict[str, str]) -> str:
    """The requested run's text, or A's in a comparison (it streams first)."""
    return next(iter(texts.values()), "")
