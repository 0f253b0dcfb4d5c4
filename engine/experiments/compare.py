"""Comparisons as experiments: A and B (differing in one setting) run interleaved over several
trials after a warm-up; each timing gets a median ratio, an interval and a verdict, and B's quality
cost is measured teacher-forced on A's output.

Why this shape: one dense run followed by one sparse run reported 0.82x-1.55x "speedups" for
identical kernels on this project's CPU. Alternating the order (A B, then B A, ...) cancels drift
and order effects, pairing each A with the B next to it cancels slow load changes, and a verdict
of `same` is given whenever the interval, widened by each side's own run-to-run noise, holds 1.
Every run is scheduled `alone` (engine.scheduler): other users' requests wait, rather than share
its steps and its timings; a remote server's runs too, so a server on the same machine has its CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TypeVar

import torch

from engine.api.request import GenerationRequest
from engine.api.results import Comparison, Quality, Result, Timing
from engine.api.validation import Sides, check_family
from engine.backends.dispatch import generate
from engine.experiments.statistics import compare_timing, distribution_quality, trial_count
from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.models.registry import get_spec
from engine.runtime.engine import ModelCache
from engine.runtime.scoring import teacher_forced_logprobs

T = TypeVar("T")


def _run(cache: ModelCache, request: GenerationRequest, label: str) -> Iterator[tuple[str, str] | Result]:
    """One run, alone: (label, text delta) pairs as text arrives, then the Result."""
    for item in generate(request, cache, alone=True):
        yield item if isinstance(item, Result) else (label, item)


def _last(items: Iterator) -> Result:
    *_, result = items
    return result


def interleaved(
    a: Callable[[], T],
    b: Callable[[], T],
    trials: int,
    warmup: bool = True,
    on_trial: Callable[[int], None] | None = None,
) -> tuple[list[T], list[T]]:
    """(A results, B results) of `trials` paired runs whose order alternates (A B, B A, ...) so drift
    and order effects cancel; after one untimed run of each if `warmup`."""
    if warmup:
        a(), b()
    results: tuple[list[T], list[T]] = ([], [])
    order = [(a, results[0]), (b, results[1])]
    for trial in range(trials):
        if on_trial:
            on_trial(trial)
        for run, into in order if trial % 2 == 0 else order[::-1]:
            into.append(run())
    return results


def _timings(a_runs: list[Result], b_runs: list[Result]) -> dict[str, Timing | None]:
    def values(runs: list[Result], name: str) -> list[float | None]:
        return [getattr(r.metrics, name) for r in runs]

    timings: dict[str, Timing | None] = {}
    for key, name in (
        ("prefill", "prefill_ms"), ("ttft", "ttft_ms"), ("total", "total_ms"), ("decode", "decode_tokens_per_s")
    ):  # fmt: skip
        a, b = values(a_runs, name), values(b_runs, name)
        # None when a side lacks the measure: a decode of under two tokens, a server that reports no prefill
        timings[key] = compare_timing(a, b, higher_is_better=key == "decode") if None not in a + b else None
    return timings


def _agreement(a: Result, b: Result, tokenizer) -> tuple[float, int | None]:
    """Free-running agreement: share of identical tokens, and where they first differ. A remote
    side's text (a server sends no token ids) is tokenized by the local side's `tokenizer`; two
    remote sides compare words."""
    if a.scores is not None:
        return float(a.text == b.text), None if a.text == b.text else 0

    def tokens(r: Result) -> list:
        if r.token_ids:
            return r.token_ids
        return tokenizer(r.text, add_special_tokens=False)["input_ids"] if tokenizer else r.text.split()

    x, y = tokens(a), tokens(b)
    first = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), None)
    if first is None and len(x) != len(y):
        first = min(len(x), len(y))
    longest = max(len(x), len(y))
    return (sum(p == q for p, q in zip(x, y, strict=False)) / longest if longest else 1.0), first


def teacher_forced_quality(
    loaded_a: LoadedModel,
    loaded_b: LoadedModel,
    sides: tuple[GenerationRequest, GenerationRequest],
    a: Result,
    b: Result,
) -> tuple[Quality | None, str]:
    """B's quality cost on A's output (None and the reason when it cannot be measured)."""
    if a.scores is not None:  # classification: the two label distributions
        labels = list(a.scores)
        p = torch.tensor([[a.scores[k] for k in labels]]).clamp_min(1e-12).log()
        q = torch.tensor([[b.scores.get(k, 0.0) for k in labels]]).clamp_min(1e-12).log()
        tv = 0.5 * sum(abs(a.scores[k] - b.scores.get(k, 0.0)) for k in labels)
        return replace(distribution_quality(p, q, None), tokens=len(labels), tv_distance=tv), ""
    if not a.token_ids:
        return None, "A generated no tokens to score."
    same_tokenizer = loaded_a.tokenizer is loaded_b.tokenizer  # one model: no need to compare vocabularies
    if not same_tokenizer and loaded_a.tokenizer.get_vocab() != loaded_b.tokenizer.get_vocab():
        return None, "A and B use different tokenizers, so B cannot score A's tokens."
    logp_a = teacher_forced_logprobs(loaded_a, sides[0], a.token_ids)
    logp_b = teacher_forced_logprobs(loaded_b, sides[1], a.token_ids)
    vocab = min(logp_a.shape[-1], logp_b.shape[-1])  # embedding tables may be padded differently
    targets = torch.tensor(a.token_ids, device=logp_a.device)
    return distribution_quality(logp_a[:, :vocab], logp_b[:, :vocab].to(logp_a.device), targets), ""


def _local(cache: ModelCache, request: GenerationRequest, progress: ProgressFn | None) -> LoadedModel | None:
    """A side's loaded model (None: a remote server's side)."""
    options = request.options
    if get_spec(options.model).remote:
        return None
    loaded = cache.get(options.model, options.precision, progress)
    check_family(loaded.spec, request)  # an unregistered model's family is known only now
    return loaded


def run_comparison(
    request: GenerationRequest, sides: Sides, cache: ModelCache, progress: ProgressFn | None = None
) -> Iterator[tuple[str, str] | Comparison]:
    """Yield (label, text delta) while the warm-up trial streams (A, then B), then the Comparison."""
    report = progress or (lambda fraction, message: None)
    req_a, req_b = replace(request, options=sides.a), replace(request, options=sides.b)
    loaded_a, loaded_b = _local(cache, req_a, progress), _local(cache, req_b, progress)
    first: dict[str, Result] = {}
    for fraction, (req, label) in ((0.0, (req_a, sides.a_label)), (0.05, (req_b, sides.b_label))):
        # The warm-up run streams its text (the outputs shown come from it); its timings are not used.
        report(fraction, f"warm-up: {label}")
        for item in _run(cache, req, label):
            if isinstance(item, Result):
                first[label] = item
            else:
                yield item
    first_a, first_b = first[sides.a_label], first[sides.b_label]
    trials = trial_count(request.options.trials, first_a, first_b)
    a_runs, b_runs = interleaved(
        lambda: _last(_run(cache, req_a, sides.a_label)),
        lambda: _last(_run(cache, req_b, sides.b_label)),
        trials,
        warmup=False,  # the streamed runs above were the warm-up
        on_trial=lambda trial: report(0.1 + 0.8 * trial / trials, f"trial {trial + 1} of {trials}"),
    )
    report(0.9, "quality: B scores A's output")
    if loaded_a is None or loaded_b is None:
        quality, note = None, "a remote server sends text, not the probabilities of A's tokens."
    else:
        quality, note = cache.scheduler.call(
            lambda _: teacher_forced_quality(loaded_a, loaded_b, (req_a, req_b), first_a, first_b)
        )
    local = loaded_a or loaded_b
    agreement, divergence = _agreement(first_a, first_b, local.tokenizer if local else None)
    report(1.0, "done")
    yield Comparison(
        axis=sides.axis,
        a_label=sides.a_label,
        b_label=sides.b_label,
        a=first_a,
        b=first_b,
        **_timings(a_runs, b_runs),
        quality=quality,
        token_agreement=agreement,
        first_divergence=divergence,
        density=first_b.metrics.density,
        quality_note=note,
    )
