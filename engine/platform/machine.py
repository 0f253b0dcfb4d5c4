"""This machine's limits, measured once and kept beside the model cache: the memory bandwidth PyTorch
reads at and the fp32 matmul throughput, all threads. A request's time is set against them (decode
reads the weights each step; prefill multiplies matrices): `python -m engine measure-machine`, which
set-up runs, or the app's warm-up where none is kept."""

from __future__ import annotations

import contextlib
import functools
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from engine.platform.measure import memory_bandwidth
from engine.platform.settings import settings

MATMUL_SIZE = 1024  # fp32 square matmul: big enough for every core's vector units, a few ms each


@dataclass(frozen=True)
class MachineLimits:
    cpu: str  # what it was measured on (a cache that moves to another machine is measured again)
    threads: int
    read_gb_per_s: float  # reading a buffer far larger than the caches (STREAM-like sum)
    matmul_gflop_per_s: float  # fp32 square matmuls of MATMUL_SIZE


def cpuinfo(field: str) -> str | None:
    """The first value of `field` ("model name", "flags") in Linux's /proc/cpuinfo; None elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == field:
                return value.strip()
    return None


def cpu_name() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def _path() -> Path:
    return settings().cache / "machine.json"


def measure_machine(repeats: int = 5) -> MachineLimits:
    """Measure now (a few seconds, both cores busy) and keep the result."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ a  # first touch, thread pool up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    limits = MachineLimits(
        cpu=cpu_name(),
        threads=torch.get_num_threads(),
        read_gb_per_s=memory_bandwidth(repeats=repeats)["read_gb_per_s"],
        matmul_gflop_per_s=2 * MATMUL_SIZE**3 / best / 1e9,
    )
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(limits), indent=2))
    machine_limits.cache_clear()
    return limits


@functools.cache  # read once: every finished request asks, on the engine thread
def machine_limits() -> MachineLimits | None:
    """The limits kept for this CPU and thread count, or None where none were measured."""
    try:
        kept = MachineLimits(**json.loads(_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return kept if (kept.cpu, kept.threads) == (cpu_name(), torch.get_num_threads()) else None
