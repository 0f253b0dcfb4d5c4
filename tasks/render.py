"""Engine results -> what the UI and API return (plain dicts and tables)."""

from __future__ import annotations

from dataclasses import asdict

from engine import Comparison, Result


def metrics_dict(final: Result | Comparison) -> dict:
    if isinstance(final, Result):
        return {**asdict(final.metrics), "truncated_tokens": final.truncated_tokens}
    data = final.to_dict()
    return {
        "dense": data["dense"]["metrics"],
        "sparse": data["sparse"]["metrics"],
        "comparison": {k: v for k, v in data.items() if k not in ("dense", "sparse")},
    }


def output_text(final: Result | Comparison) -> str:
    if isinstance(final, Result):
        return final.text
    return f"--- dense ---\n{final.dense.text}\n\n--- sparse ---\n{final.sparse.text}"
