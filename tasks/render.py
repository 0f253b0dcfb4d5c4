"""Engine results -> what the UI shows beyond the engine's own formatters (engine.report): the
bar plot frame of a comparison and the streamed reference text. Typed in, no string keys."""

from __future__ import annotations

import pandas as pd

from engine import Comparison

PHASES = ("prefill", "first token", "per decode token", "total")
PHASE_ORDER = [f"{phase} · {mode}" for phase in PHASES for mode in ("dense", "sparse")]  # bar plot x order


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """Milliseconds per phase, dense next to sparse, for a bar plot (one unit, one axis)."""
    records = []
    for mode, result in (("dense", comparison.dense), ("sparse", comparison.sparse)):
        m = result.metrics
        per_token = 1000 / m.decode_tokens_per_s if m.decode_tokens_per_s else None
        values = (m.prefill_ms, m.ttft_ms, per_token, m.total_ms)
        records += [
            {"phase": f"{phase} · {mode}", "ms": value, "mode": mode}
            for phase, value in zip(PHASES, values, strict=True)
            if value is not None
        ]
    return pd.DataFrame(records)


def reference_text(texts: dict[str, str]) -> str:
    """The requested mode's text, or the dense run's in compare mode (it streams first)."""
    return next(iter(texts.values()), "")
