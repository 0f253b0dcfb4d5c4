"""`python -m engine.bench logprobs`: what asking for token log-probabilities costs decode throughput.

Per user count (default 1 and 8), rounds of the serve benchmark's chat requests (one each, on one warm
engine, compiled steps ready) alternate without and with `logprobs=K` (`--logprobs`, default 5),
`--repeats` pairs (default 3), the order swapped every other pair. The ratio of each pair's aggregate
tokens/s, with logprobs over without: its median and range. Greedy, so both answer the same tokens.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from engine.api.options import RunOptions
from engine.attention.choice import DENSE
from engine.bench.serve import Progress, ServeRow, serve_round, warm
from engine.experiments.figures import figure_panels
from engine.models.registry import DEFAULT_MODEL
from engine.runtime.engine import Engine


@dataclass
class LogprobsRow:
    users: int
    logprobs: int  # alternatives asked for per token
    plain_tokens_per_s: float  # median over the rounds: new tokens over each round's wall time
    logprobs_tokens_per_s: float
    ratio: float  # median over the pairs of (with logprobs / without)
    ratio_low: float
    ratio_high: float
    tokens_plain: int  # new tokens of the rounds, summed: equal when both answered the same
    tokens_logprobs: int


LOGPROBS_COLUMNS = list(LogprobsRow.__dataclass_fields__)


def logprobs_table(
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    users: tuple[int, ...] = (1, 8),
    top: int = 5,
    repeats: int = 3,
    new_tokens: int = 64,
    progress: Progress | None = None,
) -> list[LogprobsRow]:
    plain = RunOptions(model=model, precision=precision, max_new_tokens=new_tokens)
    asking = replace(plain, logprobs=top)
    engine = Engine()
    warm(engine, plain, {DENSE: {min(u, engine.max_batch) for u in users}})
    rows = []
    for u, count in enumerate(users):
        without: list[ServeRow] = []
        asked: list[ServeRow] = []
        for r in range(repeats):
            if progress:
                progress((u * repeats + r) / (len(users) * repeats), f"{count} users, pair {r + 1}")
            for options in (plain, asking) if r % 2 == 0 else (asking, plain):
                row = serve_round(engine, model, "batched", count, 1, options)
                (asked if options.logprobs else without).append(row)
        ratios = [a.tokens_per_s / p.tokens_per_s for p, a in zip(without, asked, strict=True)]
        rows.append(
            LogprobsRow(
                users=count,
                logprobs=top,
                plain_tokens_per_s=statistics.median(r.tokens_per_s for r in without),
                logprobs_tokens_per_s=statistics.median(r.tokens_per_s for r in asked),
                ratio=statistics.median(ratios),
                ratio_low=min(ratios),
                ratio_high=max(ratios),
                tokens_plain=sum(r.tokens for r in without),
                tokens_logprobs=sum(r.tokens for r in asked),
            )
        )
    return rows


def plot_logprobs(rows: list[LogprobsRow], path) -> None:
    panels = [("ratio", "tokens/s with logprobs / without (whole rounds)")]
    with figure_panels(path, panels, (5.5, 3.6)) as pairs:
        for axes, (_, title) in pairs:
            labels = [f"{r.users} users" for r in rows]
            low = [r.ratio - r.ratio_low for r in rows]
            high = [r.ratio_high - r.ratio for r in rows]
            axes.bar(labels, [r.ratio for r in rows], yerr=[low, high], capsize=4)
            axes.axhline(0.95, color="grey", linestyle="--", label="0.95 (5% cost)")
            axes.set(ylabel="ratio", title=title)
            axes.legend()
