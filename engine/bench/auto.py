"""What `auto` should be on this machine, from one decode table (`python -m engine.bench decode`
prints it): of the precisions that keep quality against the reference, the fastest for a request."""

from __future__ import annotations

import math

from engine.bench.decode import LONG_INPUT, DecodeRow, measured

# `auto` keeps quality when, teacher-forced on real prose against the reference (fp32), the mean per-token KL
# is at most AUTO_MAX_KL nats (what llama.cpp's own kernels cost on the same GGUF: 0.003-0.004) and the top
# token agrees at AUTO_MIN_TOP1 of the positions.
AUTO_MAX_KL = 0.005
AUTO_MIN_TOP1 = 0.90


def request_seconds(row: DecodeRow, new_tokens: int) -> float:
    """A chat request (this table's prompt) and a long-document one (LONG_INPUT tokens), each then
    decoding `new_tokens`: the geometric mean of their times, so neither workload decides alone."""
    decode_s = new_tokens / row.decode_tokens_per_s
    chat = row.prefill_ms / 1000 + decode_s
    long = LONG_INPUT / measured(row.long_prefill_tokens_per_s) + decode_s
    return math.sqrt(chat * long)


def auto_choice(rows: list[DecodeRow], new_tokens: int) -> tuple[str, list[str]]:
    """What `auto` should be on this machine, from one decode table, and the lines that show why: of
    the precisions that keep quality, the one whose faster path gives the shortest request_seconds."""
    best: dict[str, DecodeRow] = {}
    for row in rows:
        if row.engine == "studio" and row.decode_tokens_per_s > getattr(
            best.get(row.precision), "decode_tokens_per_s", 0
        ):
            best[row.precision] = row
    keeps = {
        p: measured(r.kl_vs_reference) <= AUTO_MAX_KL and measured(r.top1_vs_reference) >= AUTO_MIN_TOP1
        for p, r in best.items()
    }
    choice = min((p for p in best if keeps[p]), key=lambda p: request_seconds(best[p], new_tokens))
    lines = [
        f"{p:8} {r.path:8} KL {r.kl_vs_reference:.4f} top-1 {r.top1_vs_reference:.0%} "
        f"{'keeps quality ' if keeps[p] else 'changes output'} request {request_seconds(r, new_tokens):.2f} s"
        for p, r in best.items()
    ]
    return choice, [
        *lines,
        f"auto on this machine: {choice} (KL <= {AUTO_MAX_KL}, top-1 >= {AUTO_MIN_TOP1:.0%}, fastest)",
    ]
