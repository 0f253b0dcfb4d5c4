"""`python -m engine.bench decode`: decode speed per precision and path (eager / compiled), next to
llama.cpp on the same GGUF in the same run when `llama_cpp` is importable (an optional extra).

Decode on these CPUs is bound by the weight bytes read per token, so each row also gives the
achieved bandwidth: footprint x tokens/s.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..cache import ModelCache
from ..decode import CompiledDecode
from ..embedded import locate_packaged_file
from ..options import DEFAULT_MODEL, RunOptions
from ..precision import FLOAT_DTYPES
from ..registry import get_spec
from ..service import run
from ..types import GenerationRequest, Message, Result
from .report import figure_panels

Progress = Callable[[float, str], None]
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
    compile_cold_s: float | None = None  # first compile of this length bucket in this process
    compile_warm_s: float | None = None  # the same again with a fresh compiler (its on-disk caches warm)
    vs_llama_cpp: float | None = None  # decode tokens/s over llama.cpp's in this run


DECODE_COLUMNS = [
    "engine", "precision", "path", "decode_tokens_per_s", "vs_llama_cpp", "gb_per_s", "prefill_ms", "new_tokens",
    "footprint_mb", "compile_cold_s", "compile_warm_s",
]  # fmt: skip


def _median_run(request: GenerationRequest, cache: ModelCache, repeats: int) -> tuple[Result, float, float]:
    run(request, cache)  # warm-up: first-call allocations are not the steady state
    results = [run(request, cache) for _ in range(repeats)]
    rates = [r.metrics.decode_tokens_per_s for r in results]
    return results[0], statistics.median(rates), statistics.median(r.metrics.prefill_ms for r in results)


def _row(precision: str, path: str, result: Result, rate: float, prefill_ms: float, **extra) -> DecodeRow:
    m = result.metrics
    return DecodeRow("studio", precision, path, rate, prefill_ms, m.new_tokens, m.model_memory_mb,
                     m.model_memory_mb * rate / 1024, **extra)  # fmt: skip


def studio_rows(
    model: str, precisions: tuple[str, ...], new_tokens: int, repeats: int, progress: Progress | None
) -> list[DecodeRow]:
    cache = ModelCache()
    rows = []
    messages = (Message("user", PROMPT),)
    for i, precision in enumerate(precisions):
        if progress:
            progress(i / len(precisions), precision)
        request = GenerationRequest(
            RunOptions(model=model, precision=precision, max_new_tokens=new_tokens), messages=messages
        )
        loaded = cache.get(model, precision)
        compiled = loaded.compiled
        compiled.enabled = False  # eager first: no background compile may run during these timings
        result, rate, prefill = _median_run(request, cache, repeats)
        rows.append(_row(precision, "eager", result, rate, prefill))
        if precision not in FLOAT_DTYPES:
            continue  # bitsandbytes' layers do not compile
        tokens = result.metrics.input_tokens + new_tokens
        compiled.compile_now(tokens)
        if compiled.failures:
            print(f"{precision}: not compiled ({next(iter(compiled.failures.values()))})")
            continue
        cold = next(iter(compiled.compile_seconds.values()))
        again = CompiledDecode(loaded.model, enabled=False)
        again.compile_now(tokens)
        result, rate, prefill = _median_run(request, cache, repeats)
        assert result.metrics.decode_path == "compiled", result.metrics.decode_path
        rows.append(_row(precision, "compiled", result, rate, prefill, compile_cold_s=cold,
                         compile_warm_s=next(iter(again.compile_seconds.values()))))  # fmt: skip
    return rows


def llama_cpp_row(model: str, new_tokens: int, repeats: int) -> DecodeRow | None:
    """llama.cpp on the GGUF the embedded model comes from, greedy, same prompt; None without llama_cpp."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    spec = get_spec(model)
    if spec.source not in ("embedded", "gguf"):
        return None
    path = locate_packaged_file(spec.location) if spec.source == "embedded" else Path(spec.location)
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)
    rates, prefills, counts = [], [], []
    for attempt in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        arrivals = []  # one streamed chunk per generated token; the role header and the end carry no text
        for chunk in llm.create_chat_completion(
            [{"role": "user", "content": PROMPT}], max_tokens=new_tokens, temperature=0.0, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):
                arrivals.append(time.perf_counter())
        if attempt and len(arrivals) > 1:
            rates.append((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]))
            prefills.append((arrivals[0] - start) * 1000)
            counts.append(len(arrivals))
    size_mb = path.stat().st_size / 2**20
    rate = statistics.median(rates)
    quant = path.stem.rsplit(".", 1)[-1]  # e.g. Q4_1
    return DecodeRow("llama.cpp", f"{quant} (GGUF)", "llama.cpp", rate, statistics.median(prefills), counts[0],
                     size_mb, size_mb * rate / 1024)  # fmt: skip


def decode_table(
    model: str = DEFAULT_MODEL,
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8", "nf4"),
    new_tokens: int = 128,
    repeats: int = 2,
    progress: Progress | None = None,
) -> list[DecodeRow]:
    rows = studio_rows(model, precisions, new_tokens, repeats, progress)
    anchor = llama_cpp_row(model, new_tokens, repeats)
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
