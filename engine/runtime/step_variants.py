"""The ways a decode step can be compiled, in the order they are tried (engine.runtime.compile): each
that fails gives way to the next, for this model or, for an untested GPU path, for the process."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.platform.fallbacks import CUDA_GRAPHS, FALLBACKS


@dataclass(frozen=True)
class StepVariant:
    """One way to compile a step; when it fails, the next one is tried."""

    name: str
    mode: str | None  # torch.compile's mode
    inductor: dict[str, bool]  # inductor settings for this compile only
    fallback: str | None = None  # the FALLBACKS path its failure records process-wide (else: this model's)
    instead: str = ""
    saved: bool = False  # compiled ahead of time and saved for later processes (engine.runtime.saved_steps)


# The step's wrapper in C++ (inductor's cpp_wrapper): the generated code calls each kernel from C++
# rather than Python, ~4 ms less per step of the embedded model (profile: README). Built apart from
# the kernels (cpp_wrapper_build_separate): one translation unit of both took 10 minutes to compile.
# A graph can meet a bug of it (int8-wo's did: a bmm into a reused buffer failed at run time); that
# model's steps then take the Python wrapper.
_CPP = {"cpp_wrapper": True, "cpp_wrapper_build_separate": True}
CPP_WRAPPER = StepVariant(
    "the C++ wrapper (inductor's cpp_wrapper)", None, _CPP, instead="its steps take the Python wrapper"
)
# The same step compiled ahead of time and saved (torch's precompile): a later process loads it in
# seconds. A graph torch cannot save (or whose saved step fails) compiles on its first call instead.
SAVED = StepVariant(
    "the saved step (torch's aot_compile)", None, _CPP, instead="its steps compile in each process", saved=True
)
PLAIN = StepVariant("the plain compiled step", None, {})


def step_variants(device: torch.device) -> list[StepVariant]:
    """The variants to try, in order: on CUDA, the step captured as a CUDA graph too (static cache
    shapes allow it), unless that failed once in this process; on CPU, a C++ wrapper, saved for later
    processes, else compiled in each; then the plain compiled step."""
    if device.type == "cuda" and not FALLBACKS.failed(CUDA_GRAPHS):
        graphs = StepVariant("CUDA graphs", "reduce-overhead", {}, CUDA_GRAPHS, "compiled steps without CUDA graphs")
        return [graphs, PLAIN]
    if device.type == "cpu":
        return [SAVED, CPP_WRAPPER, PLAIN]
    return [PLAIN]
