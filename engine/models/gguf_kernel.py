"""`torch.ops.studio.gguf_mm` and `gguf_dequantize` (gguf_mm.cpp): built for this CPU on first use, kept under STUDIO_CACHE.

PyTorch's JIT extension builder compiles it once (about 20 s) into a folder named after the CPU's
vector capability, since a cache directory may move between machines; a later process loads the
built library in milliseconds. The compiler sees the op through its fake (shape-only) version, so a
compiled decode step calls it like any other kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from engine.platform.errors import PrecisionError
from engine.platform.machine import cpuinfo
from engine.platform.settings import settings

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("gguf_mm.cpp")
KINDS = {"Q4_0": 0, "Q4_1": 1, "Q8_0": 2}  # the op's `kind` argument
_VECTOR_FLAGS = {"AVX2": ["-mavx2", "-mfma", "-mf16c"], "AVX512": ["-mavx2", "-mfma", "-mf16c"]}
# AVX-512 VNNI's dpbusd: a block's int8 products summed in one instruction where AVX2 takes two
_VNNI = ({"avx512_vnni", "avx512vl"}, ["-mavx512vnni", "-mavx512vl"])
_LOADING = threading.Lock()  # one thread of this process builds or loads it; the others then find it loaded


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    return set((cpuinfo("flags") or "").split())


def kernel_variant() -> tuple[str, list[str]]:
    """The kernel's name for this CPU's vector capability, and its compiler flags."""
    capability = torch.backends.cpu.get_cpu_capability()  # AVX2, AVX512, DEFAULT...
    # -fopenmp: ATen's parallel_for is OpenMP; without it the kernel would run on one core
    flags = ["-O3", "-fopenmp", *_VECTOR_FLAGS.get(capability, [])]
    vnni = capability.startswith("AVX512") and _VNNI[0] <= _cpu_flags()
    if vnni:
        flags += _VNNI[1]
    return f"studio_gguf_mm_{capability.lower()}{'_vnni' if vnni else ''}", flags


@contextlib.contextmanager
def _builder(build: Path) -> Iterator[None]:
    """Be the one process that builds or loads in `build`. PyTorch's builder guards a build with a lock
    file that a killed process leaves behind, and every later process then waits on it for ever (a
    CI run did, for 90 minutes): an OS lock, which ends with its holder, goes around it, and whoever
    holds that may remove a lock file left behind."""
    with (build / "studio.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        yield


def load_kernel() -> None:
    """Build (first time) and load the op; PrecisionError when this machine cannot build it."""
    with _LOADING:
        _load_kernel()


@functools.cache
def _load_kernel() -> None:
    from torch.utils.cpp_extension import load

    if shutil.which("ninja") is None:  # the builder runs `ninja`: the pip package's, when the venv is not on PATH
        with contextlib.suppress(ImportError):
            import ninja

            os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    name, flags = kernel_variant()
    build = settings().cache / "kernels" / name
    build.mkdir(parents=True, exist_ok=True)
    try:
        with _builder(build):
            load(name=name, sources=[str(SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                 build_directory=str(build), is_python_module=False)  # fmt: skip
    except (RuntimeError, OSError, ImportError) as exc:  # no C++ compiler or ninja, or a failed build
        raise PrecisionError(
            f"The gguf precisions need their kernel built with a C++ compiler (g++) and ninja, and building it "
            f"failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); choose int4-wo or fp32."
        ) from exc
    torch.library.register_fake("studio::gguf_mm", _shape)
    torch.library.register_fake("studio::gguf_mm_group", _group_shape)
    torch.library.register_fake("studio::gguf_dequantize", _dequantized_shape)
    log.info("gguf_mm kernel loaded (%s)", build)


def _outputs(q: torch.Tensor) -> int:
    """A matrix's outputs, from its q in either layout (gguf_mm.cpp): (N, bytes) or (N / 8, K / 32, 128)."""
    return q.shape[0] * 8 if q.dim() == 3 else q.shape[0]


def _shape(
    x: torch.Tensor, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, kind: int, activation_bits: int
) -> torch.Tensor:
    return x.new_empty(x.shape[0], _outputs(q))


def _group_shape(
    x: torch.Tensor,
    q: list[torch.Tensor],
    d: list[torch.Tensor],
    m: list[torch.Tensor | None],
    kind: int,
    activation_bits: int,
) -> torch.Tensor:
    return x.new_empty(x.shape[0], sum(_outputs(each) for each in q))


def _dequantized_shape(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, kind: int) -> torch.Tensor:
    return d.new_empty(_outputs(q), d.shape[1] * 32, dtype=torch.float32)


def gguf_mm(
    x: torch.Tensor, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, kind: str, activation_bits: int
) -> torch.Tensor:
    """(M, K) fp32 times the blocks' (N, K) matrix transposed: (M, N) fp32 (see gguf_mm.cpp)."""
    return torch.ops.studio.gguf_mm(x, q, d, m, KINDS[kind], activation_bits)


def gguf_dequantize(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, kind: str) -> torch.Tensor:
    """The blocks' (N, K) weights in fp32, by ggml's formula (engine.models.gguf_blocks.dequantize_rows)."""
    return torch.ops.studio.gguf_dequantize(q, d, m, KINDS[kind])
