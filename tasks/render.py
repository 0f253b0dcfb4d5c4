"""Engine results -> what the UI shows beyond the engine's own formatters (engine.api.report): the
comparison's plot and table frame, and the attention picture. Typed in, no string keys."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from engine import AttentionMap, Comparison, comparison_headers, comparison_rows

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


def attention_image(found: AttentionMap) -> np.ndarray:
    """The attention picture as an RGB image: dense attention probabilities (per token up to
    MAP_TOKENS, else per tile; log colour) with the tiles the prefill computed outlined (white: the
    pattern's positional part, orange: blocks picked by content), and below, the first decode step's
    probabilities over the keys with the keys it read marked."""
    figure = Figure(figsize=(6.4, 7.2), layout="constrained")
    grid = figure.add_gridspec(2, 1, height_ratios=(6, 1))
    top, bottom = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
    tokens, block = found.tokens, found.block
    if found.probabilities is not None:
        values, extent = np.array(found.probabilities), tokens
    else:  # per tile: the mass of the keys of each tile, averaged over its queries
        values, extent = np.array(found.tile_mass), len(found.tile_mass) * block
    values = np.where(np.tril(np.ones_like(values)) > 0, values, np.nan)
    shown = top.imshow(np.clip(values, 1e-5, 1), norm=LogNorm(1e-5, 1), cmap="magma",
                       extent=(0, extent, extent, 0), interpolation="nearest")  # fmt: skip
    figure.colorbar(shown, ax=top, label="dense attention probability", shrink=0.8)
    content = set(found.content_tiles)
    for colour, tiles in (("white", [t for t in found.tiles if t not in content]), ("orange", found.content_tiles)):
        top.add_collection(PatchCollection([Rectangle((k * block, q * block), block, block) for q, k in tiles],
                                           facecolor="none", edgecolor=colour, linewidth=0.4))  # fmt: skip
    name = found.attention + (f" (side {found.side})" if found.side else "")
    top.set(xlim=(0, tokens), ylim=(tokens, 0), xlabel="key position", ylabel="query position",
            title=f"{found.model}, layer {found.layer}, head {found.head}: {name}\n"
                  f"prefill keeps {found.density:.0%} of the pairs, {found.mass_recall:.0%} of the attention")  # fmt: skip
    decode = np.array(found.decode_probabilities)
    bottom.bar(range(len(decode)), decode, width=1.0, color="grey")
    read = np.zeros(len(decode), dtype=bool)
    read[found.decode_keys] = True
    bottom.bar(np.flatnonzero(read), decode[read], width=1.0, color="tab:orange")
    bottom.set(xlim=(0, len(decode)), yscale="log", ylim=(1e-5, 1), xlabel="key position",
               title=f"first decode step: reads {read.sum()} keys (orange), {found.decode_mass_recall:.0%} of its attention")  # fmt: skip
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
