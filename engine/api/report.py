"""Results as every front end shows them: one formatter for the metrics line, the label scores and
the comparison table, and the JSON payload the API returns (which the UI reads back, typed)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, fields, is_dataclass
from typing import Any

from pydantic import TypeAdapter

from engine.api.results import Branch, Comparison, Metrics, Result, Timing, TokenLogprob

Final = Result | Comparison
_METRICS = TypeAdapter(Metrics)
_COMPARISON = TypeAdapter(Comparison)
_LOGPROBS = TypeAdapter(list[TokenLogprob])
_BRANCH = TypeAdapter(Branch)
_RESULT_FIELDS = ("truncated_tokens", "finish_reason", "logprobs", "branch")  # beside the metrics
_COMPARISON_FIELDS = [f.name for f in fields(Comparison) if f.name not in ("axis", "a_label", "b_label", "a", "b")]


def scores_text(scores: dict[str, float]) -> str:
    """Labels by falling probability: "positive 0.93, negative 0.05"."""
    return ", ".join(f"{label} {p:.2f}" for label, p in sorted(scores.items(), key=lambda kv: -kv[1]))


def answer(result: Result) -> str:
    return scores_text(result.scores) if result.scores else result.text


def labelled(texts: dict[str, str]) -> str:
    """One run's text as is; in a comparison each side's text under its label."""
    if len(texts) == 1:
        return next(iter(texts.values()))
    return "\n\n".join(f"--- {run} ---\n{text}" for run, text in texts.items())


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: float, limit: float | None) -> str:
    return f", {value / limit:.0%} of this machine's {limit:.1f}" if limit else ""


def time_split_text(m: Metrics) -> str:
    """Where the time went: decode's weight reading and prefill's matmuls against this machine's limits."""
    parts = []
    if m.decode_gb_per_s is not None and m.decode_read_mb is not None:
        parts.append(f"decode read {m.decode_read_mb:.0f} MB a step at {m.decode_gb_per_s:.1f} GB/s"
                     f"{_share(m.decode_gb_per_s, m.machine_read_gb_per_s)}")  # fmt: skip
    if m.prefill_gflop_per_s is not None:
        parts.append(
            f"prefill {m.prefill_gflop_per_s:.1f} GFLOP/s{_share(m.prefill_gflop_per_s, m.machine_gflop_per_s)}"
        )
    return "".join(f" · {part}" for part in parts)


def metrics_line(result: Result) -> str:
    m = result.metrics
    decode = f"{m.decode_tokens_per_s:.1f} tok/s" if m.decode_tokens_per_s else "n/a"
    cut = f" · input truncated by {result.truncated_tokens} tokens" if result.truncated_tokens else ""
    stopped = " · stopped at the time limit" if result.finish_reason == "time_limit" else ""
    if m.decode_path == "compiled" and m.compile_s is not None:
        decode += f" (compiled step; its compile took {m.compile_s:.0f} s once, in the background)"
    elif m.decode_path == "mixed" and m.compile_s is not None:
        decode += " (some steps eager: the compiled step for that batch was not ready yet)"
    elif m.decode_path == "eager" and m.new_tokens > 1:
        decode += " (eager)"
    if m.batch_size > 1:
        decode += f", in batches of {m.batch_size:.1f} sequences on average"
    if m.speculation != "none" and m.decode_steps:
        kept = f"{m.accepted_tokens / m.proposed_tokens:.0%}" if m.proposed_tokens else "-"
        decode += (
            f", speculation {m.speculation}: {m.accepted_tokens} of {m.proposed_tokens} guesses kept ({kept}), "
            f"{(m.new_tokens - 1) / m.decode_steps:.2f} tokens a step"
        )
        if m.draft_ms:
            decode += f", the draft's steps {m.draft_ms:.0f} ms"
    waited = f" · waited {m.queue_ms:.0f} ms for the engine" if m.queue_ms >= 100 else ""
    prefill = f"prefill {m.prefill_ms:.0f} ms · " if m.prefill_ms is not None else ""
    inputs = "?" if m.input_tokens is None else m.input_tokens  # a server that sends no usage
    local = ""
    if m.peak_memory_mb is not None:  # a remote server's memory and attention are not visible from here
        local = f" · peak {m.peak_memory_mb:.0f} MB · model {_num(m.model_memory_mb, 0)} MB · density {m.density:.3f}"
    local += time_split_text(m)
    server = ""
    if m.server:
        server = " · the server's own timings: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(m.server.items()))
    return (
        f"{m.attention} · {m.precision} · {m.device} — {prefill}TTFT {m.ttft_ms:.0f} ms · "
        f"decode {decode} · total {m.total_ms:.0f} ms · {inputs} in / {m.new_tokens} new"
        f"{local}{server}{waited}{cut}{stopped}"
    )


def timing_text(t: Timing) -> str:
    """A timing's verdict in words with its interval; `same` and `indicative` never say faster or slower."""
    if t.verdict == "indicative":
        return f"indicative {t.ratio:.2f}x ({t.trials} trials: too few for a verdict)"
    if t.verdict == "same":
        return f"same ({t.low:.2f}–{t.high:.2f}x, {t.trials} trials)"
    if t.verdict == "faster":
        return f"{t.ratio:.2f}x faster ({t.low:.2f}–{t.high:.2f}x, {t.trials} trials)"
    return f"{1 / t.ratio:.2f}x slower ({1 / t.high:.2f}–{1 / t.low:.2f}x, {t.trials} trials)"


def _quality_text(c: Comparison) -> str:
    q = c.quality
    if q is None:
        return f"quality not measured: {c.quality_note}"
    return f"KL {q.kl_mean:.4f}, top-1 {q.top1_agreement:.0%}"


def comparison_line(c: Comparison) -> str:
    first = f"prefill {timing_text(c.prefill)}" if c.prefill else f"time to first token {timing_text(c.ttft)}"
    return (
        f"{c.b_label} vs {c.a_label}: {first}, total {timing_text(c.total)}, "
        f"{_quality_text(c)}, token agreement {c.token_agreement:.0%}, density {_num(c.density, 3)}"
    )


def comparison_headers(c: Comparison) -> list[str]:
    return ["metric", f"A: {c.a_label}", f"B: {c.b_label}", "B vs A"]


def comparison_rows(c: Comparison) -> list[list[str]]:
    """Rows of (metric, A, B, B vs A): medians over the trials with the verdict, then the quality cost."""
    d, s = c.a.metrics, c.b.metrics
    rows = []
    for title, timing in (
        ("prefill (ms)", c.prefill),
        ("time to first token (ms)", c.ttft),
        ("decode (tokens/s)", c.decode),
        ("total (ms)", c.total),
    ):
        if timing is not None:
            rows.append(
                [title, _num(statistics.median(timing.a)), _num(statistics.median(timing.b)), timing_text(timing)]
            )
    if d.decode_path != s.decode_path:  # e.g. one side's compiled step not ready yet: not the axis's doing
        rows.append(["decode path", d.decode_path, s.decode_path, "differs: decode and total compare the paths too"])
    skipped = f"{1 - s.density:.0%} of pairs skipped" if s.density is not None else ""
    rows += [
        ["peak memory (MB)", _num(d.peak_memory_mb), _num(s.peak_memory_mb), ""],
        ["attention density", _num(d.density, 3), _num(s.density, 3), skipped],
    ]
    q = c.quality
    if q is None:
        rows.append(["quality (teacher-forced)", "", "", c.quality_note])
    else:
        scored = "labels" if q.tv_distance is not None else "A's tokens"
        rows.append([f"KL(A‖B), mean over {q.tokens} {scored}", "", "", f"{q.kl_mean:.4f}"])
        rows.append(["top-1 agreement (teacher-forced)", "", "", f"{q.top1_agreement:.0%}"])
        if q.perplexity_a is not None:
            rows.append(["perplexity of A's text", _num(q.perplexity_a, 2), _num(q.perplexity_b, 2), ""])
        if q.tv_distance is not None:
            rows.append(["label distributions: total variation", "", "", f"{q.tv_distance:.3f}"])
    first = "no divergence" if c.first_divergence is None else f"first at {c.first_divergence}"
    rows.append(["output agreement (free-running)", "", "", f"{c.token_agreement:.0%} identical, {first}"])
    if c.other_work_ms:
        rows.append(["other work during trials (CPU ms)", "", "", other_work_text(c)])
    return rows


def other_work_text(c: Comparison) -> str:
    """What else ran during the timed pairs: the most CPU other work took in one, and the pairs redone."""
    text = f"at most {max(c.other_work_ms):.0f} ms in a pair"
    if c.redone:
        text += f"; {c.redone} pair{'s' * (c.redone > 1)} disturbed and run again"
    if c.disturbed:
        text += f", {c.disturbed} still disturbed"
    return text


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [headers, *rows]
    )


_ALIASES = {"dense", "sparse"}  # dense vs sparse payloads keep their old keys next to a / b


def to_payload(final: Final) -> dict[str, Any]:
    """The metrics JSON of the API: one run's metrics (flat); or, for a comparison, each side's
    metrics (`a`, `b`), labels, outputs and the comparison (timings with intervals, quality)."""
    if isinstance(final, Result):
        one = {
            **asdict(final.metrics),
            "truncated_tokens": final.truncated_tokens,
            "finish_reason": final.finish_reason,
        }
        if final.logprobs is not None:
            one["logprobs"] = [asdict(each) for each in final.logprobs]
        if final.branch is not None:
            one["branch"] = asdict(final.branch)
        return one
    payload: dict[str, Any] = {
        "axis": final.axis,
        "labels": {"a": final.a_label, "b": final.b_label},
        "a": asdict(final.a.metrics),
        "b": asdict(final.b.metrics),
        "outputs": {"a": answer(final.a), "b": answer(final.b)},
        "comparison": {name: _plain(getattr(final, name)) for name in _COMPARISON_FIELDS},
    }
    if {final.a_label, final.b_label} == _ALIASES:
        for side, label in (("a", final.a_label), ("b", final.b_label)):
            payload[label] = payload[side]
            payload["outputs"][label] = payload["outputs"][side]
    return payload


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def from_payload(payload: dict[str, Any]) -> Final:
    """`to_payload` read back into typed objects (validated: a renamed field fails here, not in a browser).
    Outputs come back as display text; token ids are not part of the payload."""
    if "comparison" not in payload:
        metrics = {k: v for k, v in payload.items() if k not in _RESULT_FIELDS}
        logprobs, branch = payload.get("logprobs"), payload.get("branch")
        return Result(
            text="",
            metrics=_METRICS.validate_python(metrics),
            truncated_tokens=payload["truncated_tokens"],
            finish_reason=payload["finish_reason"],
            logprobs=None if logprobs is None else _LOGPROBS.validate_python(logprobs),
            branch=None if branch is None else _BRANCH.validate_python(branch),
        )
    sides = {side: {"text": payload["outputs"][side], "metrics": payload[side]} for side in ("a", "b")}
    labels = {"a_label": payload["labels"]["a"], "b_label": payload["labels"]["b"]}
    return _COMPARISON.validate_python({"axis": payload["axis"], **labels, **sides, **payload["comparison"]})


def to_json(final: Final, text: str) -> dict[str, Any]:
    """What the CLI prints with --json: the output as the API returns it, the scores, and the metrics payload."""
    scores = final.scores if isinstance(final, Result) else None
    return {"text": text, "scores": scores, "metrics": to_payload(final)}
