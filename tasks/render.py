"""Engine results -> what the UI and API return: plain dicts, table rows and plot frames.

The compare view is rebuilt from the metrics JSON alone, so an API client gets everything the
page shows in the one response.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from engine import Comparison, Result


def _answer(result: Result) -> str:
    if result.scores:
        return ", ".join(f"{k} {v:.2f}" for k, v in sorted(result.scores.items(), key=lambda kv: -kv[1]))
    return result.text


def metrics_dict(final: Result | Comparison) -> dict:
    """Single run: the flat metrics. Compare: both runs' metrics and outputs plus the comparison."""
    if isinstance(final, Result):
        return {**asdict(final.metrics), "truncated_tokens": final.truncated_tokens, "finish": final.finish_reason}
    data = final.to_dict()
    return {
        "dense": data["dense"]["metrics"],
        "sparse": data["sparse"]["metrics"],
        "outputs": {"dense": _answer(final.dense), "sparse": _answer(final.sparse)},
        "comparison": {k: v for k, v in data.items() if k not in ("dense", "sparse")},
    }


def output_text(final: Result | Comparison) -> str:
    if isinstance(final, Result):
        return final.text
    return f"--- dense ---\n{final.dense.text}\n\n--- sparse ---\n{final.sparse.text}"


def streamed_text(texts: dict[str, str]) -> str:
    """Text while streaming: one run as is; in compare mode both runs, labelled."""
    if list(texts) == ["dense"] or list(texts) == ["sparse"]:
        return next(iter(texts.values()))
    return "\n\n".join(f"--- {run} ---\n{text}" for run, text in texts.items())


def reference_text(texts: dict[str, str]) -> str:
    """The requested mode's text, or the dense run's in compare mode (it streams first)."""
    return next(iter(texts.values()), "")


def is_comparison(metrics: dict | None) -> bool:
    return bool(metrics) and "comparison" in metrics


def _ms_per_token(tokens_per_s: float | None) -> float | None:
    return 1000 / tokens_per_s if tokens_per_s else None


def _fmt(value: float | int | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_table(metrics: dict) -> list[list[str]]:
    """Rows of (metric, dense, sparse, sparse vs dense) for the compare view."""
    d, s, c = metrics["dense"], metrics["sparse"], metrics["comparison"]

    def speedup(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x faster" if value >= 1 else f"{1 / value:.2f}x slower"

    rows = [
        ["prefill (ms)", _fmt(d["prefill_ms"]), _fmt(s["prefill_ms"]), speedup(c["prefill_speedup"])],
        ["time to first token (ms)", _fmt(d["ttft_ms"]), _fmt(s["ttft_ms"]), speedup(d["ttft_ms"] / s["ttft_ms"])],
        [
            "decode (tokens/s)",
            _fmt(d["decode_tokens_per_s"]),
            _fmt(s["decode_tokens_per_s"]),
            speedup(c["decode_speedup"]),
        ],
        ["total (ms)", _fmt(d["total_ms"]), _fmt(s["total_ms"]), speedup(c["total_speedup"])],
        ["peak memory (MB)", _fmt(d["peak_memory_mb"]), _fmt(s["peak_memory_mb"]), ""],
        ["attention density", _fmt(d["density"], 3), _fmt(s["density"], 3), f"{1 - s['density']:.0%} of pairs skipped"],
    ]
    first = c["first_divergence"]
    agreement = f"{c['token_agreement']:.0%} identical, " + ("no divergence" if first is None else f"first at {first}")
    rows.append(["output agreement", "", "", agreement])
    return rows


PHASES = ("prefill", "first token", "per decode token", "total")
PHASE_ORDER = [f"{phase} · {mode}" for phase in PHASES for mode in ("dense", "sparse")]  # bar plot x order


def comparison_frame(metrics: dict) -> pd.DataFrame:
    """Milliseconds per phase, dense next to sparse, for a bar plot (one unit, one axis)."""
    records = []
    for mode in ("dense", "sparse"):
        m = metrics[mode]
        values = (m["prefill_ms"], m["ttft_ms"], _ms_per_token(m["decode_tokens_per_s"]), m["total_ms"])
        phases = dict(zip(PHASES, values, strict=True))
        records += [{"phase": f"{p} · {mode}", "ms": v, "mode": mode} for p, v in phases.items() if v is not None]
    return pd.DataFrame(records)


def metrics_summary(metrics: dict | None) -> str:
    """One Markdown line for the metrics panel."""
    if not metrics:
        return ""
    if is_comparison(metrics):
        c = metrics["comparison"]
        return (
            f"**sparse vs dense**: prefill {c['prefill_speedup']:.2f}x, total {c['total_speedup']:.2f}x, "
            f"token agreement {c['token_agreement']:.0%}, density {c['density']:.3f}"
        )
    m = metrics
    decode = f"{m['decode_tokens_per_s']:.1f} tok/s" if m["decode_tokens_per_s"] else "n/a"
    cut = f" · input truncated by {m['truncated_tokens']} tokens" if m.get("truncated_tokens") else ""
    stopped = " · stopped at the time limit" if m.get("finish") == "time_limit" else ""
    return (
        f"**{m['attention']}** · {m['precision']} · {m['device']} — prefill {m['prefill_ms']:.0f} ms · "
        f"TTFT {m['ttft_ms']:.0f} ms · decode {decode} · total {m['total_ms']:.0f} ms · "
        f"{m['input_tokens']} in / {m['new_tokens']} new · peak {m['peak_memory_mb']:.0f} MB · "
        f"model {m['model_memory_mb']:.0f} MB{cut}{stopped}"
    )
