"""`python -m engine.bench compare`: the comparison statistics checked on this machine, through the
engine exactly as the API runs a comparison.

Scenarios (each a list of independent comparisons, one row each):
- `identical`: dense vs sparse on a short document the window covers (density 1.0: the same kernel
  on both sides), so every honest verdict is `same`;
- `long`: dense vs sparse on the long sample document (about 4k tokens, window 512);
- `precision`: fp32 vs nf4 on a chat prompt (the quality cost of 4-bit weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.api.results import Comparison, Timing
from engine.data import long_document
from engine.experiments.figures import figure_panels
from engine.models.registry import DEFAULT_MODEL
from engine.runtime.engine import Engine
from engine.service import run

Progress = Callable[[float, str], None]
SUMMARIZE = "Summarize the text above in 1 sentence."


@dataclass
class ExperimentRow:
    scenario: str
    run: int
    a: str
    b: str
    trials: int
    prefill_ratio: float  # B vs A, above 1 = B faster; the interval and verdict follow
    prefill_low: float
    prefill_high: float
    prefill_verdict: str
    total_ratio: float
    total_low: float
    total_high: float
    total_verdict: str
    decode_ratio: float | None
    decode_verdict: str | None
    noise: float  # the prefill timing's noise floor
    kl_mean: float | None
    top1_agreement: float | None
    perplexity_a: float | None
    perplexity_b: float | None
    token_agreement: float
    density: float | None


EXPERIMENT_COLUMNS = [
    "scenario", "run", "a", "b", "trials", "prefill_ratio", "prefill_low", "prefill_high", "prefill_verdict",
    "total_ratio", "total_low", "total_high", "total_verdict", "decode_ratio", "decode_verdict", "noise", "kl_mean",
    "top1_agreement", "perplexity_a", "perplexity_b", "token_agreement", "density",
]  # fmt: skip


def _summarize(document: str, **options) -> GenerationRequest:
    messages = (Message("system", "You are a careful assistant."), Message("user", f"{document}\n\n{SUMMARIZE}"))
    return GenerationRequest(RunOptions(**options), messages=messages)


def scenario_requests(model: str) -> dict[str, GenerationRequest]:
    short = " ".join(long_document().split()[:200])  # ~300 tokens: a 512-token window covers it
    return {
        "identical": _summarize(short, model=model, precision="fp32", attention="compare", max_new_tokens=32),
        "long": _summarize(long_document(), model=model, precision="fp32", attention="compare", max_new_tokens=32),
        "precision": GenerationRequest(
            RunOptions(model=model, precision="fp32", compare="precision", compare_with="nf4", max_new_tokens=32),
            messages=(Message("user", "What is the capital of France? Answer in one sentence."),),
        ),
    }


def _row(scenario: str, index: int, c: Comparison) -> ExperimentRow:
    def interval(t: Timing) -> tuple[float, float, float, str]:
        return t.ratio, t.low, t.high, t.verdict

    q = c.quality
    assert c.prefill is not None  # both sides are local models, which measure their prefill
    return ExperimentRow(
        scenario, index, c.a_label, c.b_label, c.total.trials,
        *interval(c.prefill), *interval(c.total),
        c.decode.ratio if c.decode else None, c.decode.verdict if c.decode else None, c.prefill.noise,
        q.kl_mean if q else None, q.top1_agreement if q else None, q.perplexity_a if q else None,
        q.perplexity_b if q else None, c.token_agreement, c.density,
    )  # fmt: skip


def run_experiments(
    model: str = DEFAULT_MODEL, runs: dict[str, int] | None = None, progress: Progress | None = None
) -> list[ExperimentRow]:
    """`runs`: comparisons per scenario (default: 10 identical, 3 long, 1 precision)."""
    runs = runs or {"identical": 10, "long": 3, "precision": 1}
    requests = scenario_requests(model)
    engine = Engine()
    total = sum(runs.values())
    rows: list[ExperimentRow] = []
    for scenario, count in runs.items():
        for index in range(count):
            if progress:
                progress(len(rows) / total, f"{scenario} {index + 1} of {count}")
            comparison = run(requests[scenario], engine)
            assert isinstance(comparison, Comparison)  # each scenario compares two settings
            rows.append(_row(scenario, index + 1, comparison))
    return rows


def plot_experiments(rows: list[ExperimentRow], path: Path) -> None:
    """Prefill and total ratio (B vs A) per comparison with its interval; 1 = no difference."""
    panel = ("ratio", "Comparisons: median ratio and 95% interval")
    with figure_panels(path, [panel], (max(6, 0.5 * len(rows)), 4)) as [(axes, (_, title))]:
        for offset, timing in ((-0.15, "prefill"), (0.15, "total")):
            ratios = [getattr(r, f"{timing}_ratio") for r in rows]
            below = [ratio - getattr(r, f"{timing}_low") for ratio, r in zip(ratios, rows, strict=True)]
            above = [getattr(r, f"{timing}_high") - ratio for ratio, r in zip(ratios, rows, strict=True)]
            positions = [i + offset for i in range(len(rows))]
            axes.errorbar(positions, ratios, yerr=[below, above], fmt="o", capsize=3, label=timing)
        axes.axhline(1.0, color="grey", linewidth=1)
        axes.set_xticks(range(len(rows)), [f"{r.scenario} {r.run}" for r in rows], rotation=60, ha="right")
        axes.set(ylabel="B vs A (above 1: B faster)", title=title)
        axes.legend()
