"""Results as every front end shows them: one formatter for the metrics line, the label scores and
the comparison table, and the JSON payload the API returns (which the UI reads back, typed)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from pydantic import TypeAdapter

from .types import Comparison, Metrics, Result

Final = Result | Comparison
_METRICS = TypeAdapter(Metrics)
_COMPARISON = TypeAdapter(Comparison)
_COMPARISON_FIELDS = [f.name for f in fields(Comparison) if f.name not in ("dense", "sparse")]


def scores_text(scores: dict[str, float]) -> str:
    """Labels by falling probability: "positive 0.93, negative 0.05"."""
    return ", ".join(f"{label} {p:.2f}" for label, p in sorted(scores.items(), key=lambda kv: -kv[1]))


def answer(result: Result) -> str:
    return scores_text(result.scores) if result.scores else result.text


def labelled(texts: dict[str, str]) -> str:
    """One run's text as is; in compare mode each run's text under its name."""
    if len(texts) == 1:
        return next(iter(texts.values()))
    return "\n\n".join(f"--- {run} ---\n{text}" for run, text in texts.items())


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metrics_line(result: Result) -> str:
    m = result.metrics
    decode = f"{m.decode_tokens_per_s:.1f} tok/s" if m.decode_tokens_per_s else "n/a"
    cut = f" · input truncated by {result.truncated_tokens} tokens" if result.truncated_tokens else ""
    stopped = " · stopped at the time limit" if result.finish_reason == "time_limit" else ""
    return (
        f"{m.attention} · {m.precision} · {m.device} — prefill {m.prefill_ms:.0f} ms · TTFT {m.ttft_ms:.0f} ms · "
        f"decode {decode} · total {m.total_ms:.0f} ms · {m.input_tokens} in / {m.new_tokens} new · "
        f"peak {m.peak_memory_mb:.0f} MB · model {m.model_memory_mb:.0f} MB · density {m.density:.3f}{cut}{stopped}"
    )


def comparison_line(c: Comparison) -> str:
    return (
        f"sparse vs dense: prefill {c.prefill_speedup:.2f}x, total {c.total_speedup:.2f}x, "
        f"token agreement {c.token_agreement:.0%}, density {c.density:.3f}"
    )


def _speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x faster" if value >= 1 else f"{1 / value:.2f}x slower"


COMPARISON_HEADERS = ["metric", "dense", "sparse", "sparse vs dense"]


def comparison_rows(c: Comparison) -> list[list[str]]:
    """Rows of (metric, dense, sparse, sparse vs dense)."""
    d, s = c.dense.metrics, c.sparse.metrics
    first = "no divergence" if c.first_divergence is None else f"first at {c.first_divergence}"
    return [
        ["prefill (ms)", _num(d.prefill_ms), _num(s.prefill_ms), _speedup(c.prefill_speedup)],
        ["time to first token (ms)", _num(d.ttft_ms), _num(s.ttft_ms), _speedup(d.ttft_ms / s.ttft_ms)],
        ["decode (tokens/s)", _num(d.decode_tokens_per_s), _num(s.decode_tokens_per_s), _speedup(c.decode_speedup)],
        ["total (ms)", _num(d.total_ms), _num(s.total_ms), _speedup(c.total_speedup)],
        ["peak memory (MB)", _num(d.peak_memory_mb), _num(s.peak_memory_mb), ""],
        ["attention density", _num(d.density, 3), _num(s.density, 3), f"{1 - s.density:.0%} of pairs skipped"],
        ["output agreement", "", "", f"{c.token_agreement:.0%} identical, {first}"],
    ]


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [headers, *rows]
    )


def to_payload(final: Final) -> dict[str, Any]:
    """The metrics JSON of the API: one run's metrics (flat), or both runs' metrics, outputs and the comparison."""
    if isinstance(final, Result):
        return {
            **asdict(final.metrics),
            "truncated_tokens": final.truncated_tokens,
            "finish_reason": final.finish_reason,
        }
    return {
        "dense": asdict(final.dense.metrics),
        "sparse": asdict(final.sparse.metrics),
        "outputs": {"dense": answer(final.dense), "sparse": answer(final.sparse)},
        "comparison": {name: getattr(final, name) for name in _COMPARISON_FIELDS},
    }


def from_payload(payload: dict[str, Any]) -> Final:
    """`to_payload` read back into typed objects (validated: a renamed field fails here, not in a browser).
    Outputs come back as display text; token ids are not part of the payload."""
    if "comparison" not in payload:
        metrics = {k: v for k, v in payload.items() if k not in ("truncated_tokens", "finish_reason")}
        return Result(
            text="",
            metrics=_METRICS.validate_python(metrics),
            truncated_tokens=payload["truncated_tokens"],
            finish_reason=payload["finish_reason"],
        )
    runs = {run: {"text": payload["outputs"][run], "metrics": payload[run]} for run in ("dense", "sparse")}
    return _COMPARISON.validate_python({**runs, **payload["comparison"]})


def to_json(final: Final, text: str) -> dict[str, Any]:
    """What the CLI prints with --json: the output as the API returns it, the scores, and the metrics payload."""
    scores = final.scores if isinstance(final, Result) else None
    return {"text": text, "scores": scores, "metrics": to_payload(final)}
