"""Clocks, memory probes and the CPU other work takes. Every clock read follows a device synchronisation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch


def decode_rate(new_tokens: int, first_s: float, last_s: float) -> float | None:
    """Decode tokens/s: the tokens after the first over the time from the first to the last (None
    under two tokens). Local and remote runs alike."""
    return (new_tokens - 1) / (last_s - first_s) if new_tokens > 1 and last_s > first_s else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


class PeakMemory:
    """Peak memory over a span: the CUDA allocator's peak on GPU, the process's peak RSS on CPU.

    On Linux the RSS high-water mark (VmHWM) is reset at the start by writing 5 to
    /proc/self/clear_refs, so the number belongs to this span (concurrent requests share a process
    and therefore share this peak)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        return self.start()

    def start(self) -> PeakMemory:
        """Begin the span (what entering does)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass  # not Linux or not allowed: the peak then covers the process lifetime
        return self

    def __exit__(self, *exc) -> None:
        return None

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return process_peak_rss_mb()


def process_peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class OtherWork:
    """The CPU time other work took while a span ran (`ms`, after it): every other process on the
    machine (a compile's worker processes included) and this process's own background threads
    (`background_s`: their CPU seconds so far), but not this process's serving. Processes that run
    at a lowered priority (nice > 0) are left out: the kernel gives them about 1.5% of a core that
    normal-priority work wants (at nice 19), so they barely slow a timed run. The kernel counts in
    ticks of 10 ms, so a few tens of ms is the resolution."""

    def __init__(self, background_s: Callable[[], float]):
        self._background_s = background_s
        self.ms = 0.0
        self.wall_ms = 0.0

    def _sample(self) -> tuple[float, float, float, float]:
        machine = psutil.cpu_times()
        # guest time is counted in user time already; nice is the lowered-priority work left out
        left_out = ("idle", "iowait", "nice", "guest", "guest_nice")
        busy = sum(machine) - sum(getattr(machine, name, 0.0) for name in left_out)
        own = psutil.Process().cpu_times()
        return time.perf_counter(), busy, own.user + own.system, self._background_s()

    def start(self) -> OtherWork:
        self._start = self._sample()
        return self

    def stop(self) -> float:
        """The span ends: the ms other work took in it."""
        end = self._sample()
        wall, busy, own, background = (e - s for e, s in zip(end, self._start, strict=True))
        self.wall_ms = wall * 1000
        # the background threads run at nice 19 (engine.runtime.background), so `busy` leaves them
        # out: the serving threads' own CPU is own - background, and the background counts as other work
        self.ms = max(0.0, busy - (own - background)) * 1000 + background * 1000
        return self.ms

    def __enter__(self) -> OtherWork:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> dict[str, float]:
    """This machine's memory bandwidth as PyTorch reaches it (STREAM-like, all threads): reading a
    buffer far larger than the caches (a sum), and copying it (read + write), best of `repeats`."""
    buffer = torch.ones(megabytes * 2**20 // 4)
    rates: dict[str, float] = {}
    ops: tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor], int], ...] = (
        ("read", torch.sum, 1),
        ("copy", torch.clone, 2),
    )
    for name, op, traffic in ops:
        op(buffer)  # first touch
        best = min(_seconds(op, buffer) for _ in range(repeats))
        rates[f"{name}_gb_per_s"] = traffic * buffer.numel() * 4 / best / 1e9
    return rates


def _seconds(op: Callable[[torch.Tensor], torch.Tensor], buffer: torch.Tensor) -> float:
    start = time.perf_counter()
    op(buffer)
    return time.perf_counter() - start
