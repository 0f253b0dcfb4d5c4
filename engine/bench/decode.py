"""`python -m engine.bench decode`: decode speed per precision and path (eager / compiled), next to
llama.cpp on the same GGUF in the same run when `llama_cpp` is importable (an optional extra).

Decode on these CPUs is bound by the weight bytes read per token, so each row also gives the
achieved bandwidth: footprint x tokens/s. Each precision also gets what `auto` is chosen from: its
quality cost against the first precision (fp32), teacher-forced on QUALITY_TOKENS tokens of real
prose (llama.cpp's row on the same tokens), and its prefill speed on a long input.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import torch

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.api.results import Quality, Result
from engine.attention.choice import DENSE
from engine.experiments.figures import figure_panels
from engine.experiments.statistics import distribution_quality
from engine.experiments.sweep import corpus_ids
from engine.models.loader import LoadedModel, gguf_file
from engine.models.precision_menu import PRECISION_BY_NAME
from engine.models.registry import DEFAULT_MODEL, get_spec
from engine.runtime.engine import Engine
from engine.runtime.scoring import teacher_forced_logprobs
from engine.service import run

Progress = Callable[[float, str], None]
T = TypeVar("T")
PROMPT = "Tell me about the history of Paris in a few paragraphs."


@dataclass
class DecodeRow:
    engine: str  # studio | llama.cpp
    precision: str
    path: str  # eager | compiled | llama.cpp (Q4_1 GGUF)
    decode_tokens_per_s: float  # median of the timed runs
    prefill_ms: float
    new_tokens: int
    footprint_mb: float
    gb_per_s: float  # weight bytes streamed per second while decoding
    # the requests' own "where the time went" (Metrics.decode_gb_per_s, median): the weights and the
    # row's keys and values read a step, times steps a second; above gb_per_s by the keys and values
    time_split_gb_per_s: float | None = None
    compile_cold_s: float | None = None  # compiling the step in a fresh process, empty compiler cache
    compile_warm_s: float | None = None  # the same in another fresh process, the compiler cache on disk warm
    vs_llama_cpp: float | None = None  # decode tokens/s over llama.cpp's in this run
    kl_vs_reference: float | None = None  # mean KL(reference || this) per token of the quality text
    top1_vs_reference: float | None = None  # share of those positions where both pick the same token
    long_prefill_tokens_per_s: float | None = None  # a LONG_INPUT-token prompt (prefill is always eager)


DECODE_COLUMNS = [
    "engine", "precision", "path", "decode_tokens_per_s", "vs_llama_cpp", "gb_per_s", "time_split_gb_per_s",
    "prefill_ms", "new_tokens",
    "footprint_mb", "compile_cold_s", "compile_warm_s", "kl_vs_reference", "top1_vs_reference",
    "long_prefill_tokens_per_s",
]  # fmt: skip
LONG_INPUT = 2048
QUALITY_TOKENS = 512  # positions scored: at ~95% top-1 agreement, one position is 0.2 points


def measured(value: T | None) -> T:
    # set for every studio run and model here (None: a remote server, a decode of under two tokens, llama.cpp's row)
    assert value is not None
    return value


def single_result(request: GenerationRequest, engine: Engine) -> Result:
    final = run(request, engine)
    assert isinstance(final, Result)  # no comparison is asked for
    return final


@dataclass(frozen=True)
class Timed:
    """A request's timed runs, after a warm-up: the first's result, and medians."""

    result: Result
    rate: float  # decode tokens/s
    prefill_ms: float
    time_split_gb_per_s: float | None


def _median_run(request: GenerationRequest, engine: Engine, repeats: int) -> Timed:
    run(request, engine)  # warm-up: first-call allocations are not the steady state
    results = [single_result(request, engine) for _ in range(repeats)]
    rates = [measured(r.metrics.decode_tokens_per_s) for r in results]
    splits = [r.metrics.decode_gb_per_s for r in results if r.metrics.decode_gb_per_s is not None]
    return Timed(
        results[0],
        statistics.median(rates),
        statistics.median(measured(r.metrics.prefill_ms) for r in results),
        statistics.median(splits) if splits else None,  # None: not a causal model on CPU
    )


def gb_per_s(mb: float, tokens_per_s: float) -> float:
    """Bytes read a second in GB (10^9, as the machine's limits are measured) from MiB a token."""
    return mb * 2**20 * tokens_per_s / 1e9


def _row(precision: str, path: str, timed: Timed, **extra) -> DecodeRow:
    m = timed.result.metrics
    footprint = measured(m.model_memory_mb)
    return DecodeRow("studio", precision, path, timed.rate, timed.prefill_ms, m.new_tokens, footprint,
                     gb_per_s(footprint, timed.rate), time_split_gb_per_s=timed.time_split_gb_per_s, **extra)  # fmt: skip


def _long_prefill_rate(loaded: LoadedModel, engine: Engine, model: str, precision: str) -> float:
    length = min(LONG_INPUT, measured(loaded.spec.context_length) // 2)  # tiny test models have short contexts
    # as text a user could type: control tokens (BOS, a tiny tokenizer's <unk>) would come back as text
    text = loaded.tokenizer.decode(corpus_ids(loaded.tokenizer, length)[0], skip_special_tokens=True)
    request = GenerationRequest(RunOptions(model=model, precision=precision, max_new_tokens=1), text=text)
    run(request, engine)  # warm-up, as in _median_run (one new token: no decode rate)
    result = single_result(request, engine)
    return measured(result.metrics.input_tokens) / (measured(result.metrics.prefill_ms) / 1000)


@dataclass(frozen=True)
class Reference:
    """What every row is scored against: the first precision's next-token log-probabilities at each
    position of `ids` (real prose), teacher-forced."""

    ids: list[int]
    logprobs: torch.Tensor  # (len(ids) - 1, vocab): row i predicts ids[i + 1]

    def quality(self, logprobs: torch.Tensor) -> Quality:
        vocab = min(logprobs.shape[-1], self.logprobs.shape[-1])  # tables may be padded differently
        targets = torch.tensor(self.ids[1:])
        return distribution_quality(self.logprobs[:, :vocab], logprobs[:, :vocab], targets)


def prose_logprobs(engine: Engine, loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    """Teacher-forced on `ids`, on the engine's thread: row i is the model's next-token distribution
    after ids[: i + 1]."""
    return engine.runner.call(lambda _: teacher_forced_logprobs(loaded, torch.tensor([ids[:1]]), ids[1:], DENSE).cpu())


def studio_rows(
    engine: Engine, model: str, precisions: tuple[str, ...], new_tokens: int, repeats: int, progress: Progress | None
) -> tuple[list[DecodeRow], Reference]:
    rows: list[DecodeRow] = []
    messages = (Message("user", PROMPT),)
    reference: Reference | None = None
    for i, precision in enumerate(precisions):
        if progress:
            progress(i / len(precisions), precision)
        request = GenerationRequest(
            RunOptions(model=model, precision=precision, max_new_tokens=new_tokens), messages=messages
        )
        loaded = engine.get(model, precision)
        compiled = loaded.compiled
        compiled.enabled = False  # eager first: no background compile may run during these timings
        timed = _median_run(request, engine, repeats)
        if reference is None:
            length = min(QUALITY_TOKENS, measured(loaded.spec.context_length) - 1) + 1  # tiny test models: short
            ids = corpus_ids(loaded.tokenizer, length)[0].tolist()
            reference = Reference(ids, prose_logprobs(engine, loaded, ids))
        quality = reference.quality(prose_logprobs(engine, loaded, reference.ids))
        first = len(rows)
        rows.append(_row(precision, "eager", timed))
        if PRECISION_BY_NAME[precision].compiles:
            rows.extend(_compiled_row(precision, loaded, request, engine, timed.result, repeats))
        long_rate = _long_prefill_rate(loaded, engine, model, precision)
        for row in rows[first:]:
            row.kl_vs_reference, row.top1_vs_reference = quality.kl_mean, quality.top1_agreement
            row.long_prefill_tokens_per_s = long_rate
    assert reference is not None  # at least one precision
    return rows, reference


def _compiled_row(
    precision: str, loaded: LoadedModel, request: GenerationRequest, engine: Engine, eager: Result, repeats: int
) -> list[DecodeRow]:
    compiled = loaded.compiled
    tokens = measured(eager.metrics.input_tokens) + request.options.max_new_tokens
    engine.runner.call(lambda _: compiled.compile_now(tokens))  # its warm-up runs on the engine's thread
    if compiled.failures:
        print(f"{precision}: not compiled ({next(iter(compiled.failures.values()))})")
        return []
    timed = _median_run(request, engine, repeats)
    assert timed.result.metrics.decode_path == "compiled", timed.result.metrics.decode_path
    cold, warm = compile_times_across_processes(request.options.model, precision, tokens)
    return [_row(precision, "compiled", timed, compile_cold_s=cold, compile_warm_s=warm)]


def compile_times_across_processes(model: str, precision: str, tokens: int) -> tuple[float, float]:
    """Seconds to compile the decode step in a fresh process with an empty compiler cache (cold), then
    in another fresh process that finds the on-disk cache the first one left (warm: a restart)."""
    with tempfile.TemporaryDirectory() as compiler_cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": compiler_cache}
        code = "import sys; from engine.bench.decode import compile_seconds; print(compile_seconds(*sys.argv[1:]))"
        times = []
        for _ in ("cold", "warm"):
            done = subprocess.run([sys.executable, "-c", code, model, precision, str(tokens)], env=env,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            times.append(float(done.stdout.split()[-1]))
    return times[0], times[1]


def compile_seconds(model: str, precision: str, tokens: str) -> float:
    """In this process: load, compile the decode step for `tokens`, and return how long compiling took."""
    compiled = Engine().get(model, precision).compiled
    compiled.compile_now(int(tokens))
    if compiled.failures:
        raise RuntimeError(next(iter(compiled.failures.values())))
    return next(iter(compiled.compile_seconds.values()))


def _llama(model: str) -> tuple[Any, Path] | None:
    """llama.cpp on the GGUF the model comes from (`logits_all`: every position's logits, for the
    teacher-forced quality; decode speed is unaffected); None without llama_cpp or a GGUF."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    if (path := gguf_file(get_spec(model))) is None:
        return None
    return Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count(), logits_all=True, verbose=False), path


def _llama_cpp_runs(llm: Any, new_tokens: int, repeats: int) -> tuple[float, float, int]:
    """Greedy, this table's prompt: median decode tokens/s, median prefill ms, tokens generated."""
    from llama_cpp.llama_types import CreateChatCompletionStreamResponse

    rates, prefills, counts = [], [], []
    for attempt in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        arrivals = []  # one streamed chunk per generated token; the role header and the end carry no text
        stream = llm.create_chat_completion(
            [{"role": "user", "content": PROMPT}], max_tokens=new_tokens, temperature=0.0, stream=True
        )
        # stream=True returns chunks; the stubs type the return as either a response or chunks
        for chunk in cast(Iterator[CreateChatCompletionStreamResponse], stream):
            if chunk["choices"][0]["delta"].get("content"):
                arrivals.append(time.perf_counter())
        if attempt and len(arrivals) > 1:
            rates.append((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]))
            prefills.append((arrivals[0] - start) * 1000)
            counts.append(len(arrivals))
    return statistics.median(rates), statistics.median(prefills), counts[0]


def llama_cpp_decode_rate(model: str, new_tokens: int, repeats: int) -> float | None:
    """llama.cpp's decode tokens/s on this table's prompt (scripts/api_decode.py); None without it."""
    if (found := _llama(model)) is None:
        return None
    return _llama_cpp_runs(found[0], new_tokens, repeats)[0]


def llama_cpp_row(model: str, new_tokens: int, repeats: int, reference: Reference) -> DecodeRow | None:
    """llama.cpp on the GGUF the model comes from, greedy, same prompt, and its quality scored like
    every row's (teacher-forced on the reference's answer); None without llama_cpp or a GGUF."""
    if (found := _llama(model)) is None:
        return None
    llm, path = found
    rate, prefill, count = _llama_cpp_runs(llm, new_tokens, repeats)
    size_mb = path.stat().st_size / 2**20
    quant = path.stem.rsplit(".", 1)[-1]  # e.g. Q4_1
    quality = llama_cpp_quality(llm, reference)
    return DecodeRow("llama.cpp", f"{quant} (GGUF)", "llama.cpp", rate, prefill, count, size_mb, gb_per_s(size_mb, rate),
                     kl_vs_reference=quality.kl_mean, top1_vs_reference=quality.top1_agreement)  # fmt: skip


def llama_cpp_quality(llm: Any, reference: Reference) -> Quality:
    """llama.cpp's own kernels (it multiplies with its activations quantized to 8 bits) scored against
    the reference: the same ids evaluated in one pass, each position's distribution against the
    reference's, as the studio's rows are scored."""
    llm.reset()
    llm.eval(reference.ids[:-1])
    logits = torch.from_numpy(llm.scores[: len(reference.ids) - 1].copy())  # row i predicts ids[i + 1]
    return reference.quality(torch.log_softmax(logits.float(), dim=-1))


def decode_table(
    model: str = DEFAULT_MODEL,
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "nf4", "int8-wo", "int4-wo", "gguf", "gguf-q8"),
    new_tokens: int = 128,
    repeats: int = 2,
    progress: Progress | None = None,
) -> list[DecodeRow]:
    engine = Engine()
    rows, reference = studio_rows(engine, model, precisions, new_tokens, repeats, progress)
    # llama.cpp on the same thread as the engine: both use OpenMP, which slows a second thread's
    # team (engine.runtime.runner)
    anchor = engine.runner.call(lambda _: llama_cpp_row(model, new_tokens, repeats, reference))
    if anchor is not None:
        for row in rows:
            row.vs_llama_cpp = row.decode_tokens_per_s / anchor.decode_tokens_per_s
        anchor.vs_llama_cpp = 1.0
        rows.append(anchor)
    return rows


def plot_decode(rows: list[DecodeRow], path: Path) -> None:
    with figure_panels(path, [("decode_tokens_per_s", "Decode speed (greedy)")], (7, 3.6)) as [(axes, (_, title))]:
        labels = [f"{r.precision}\n{r.path}" for r in rows]
        colors = ["C1" if r.engine != "studio" else "C0" for r in rows]
        axes.bar(labels, [r.decode_tokens_per_s for r in rows], color=colors)
        axes.set(ylabel="decode tokens/s", title=title)
