"""Decode steps compiled ahead of time and kept on disk (torch's precompile, `aot_compile`): a later
process loads a step in a few seconds, where compiling it again takes ~25 s with the compiler's cache
warm and minutes cold (the embedded model, measured: README).

A saved step is the traced step (bytecode), the guards on its inputs and the compiled graph; the
model's weights are inputs of the step, not part of it. So it serves the same model at the same
precision loaded again, and its file is named by everything the step depends on: the model (name,
source, precision, configuration), the step (cache length, attention choice, rows, cache capacity),
how it was compiled, and what traced it (the engine's own sources, torch's and transformers'
versions, the CPU's instruction set and torch's thread count). Saved steps live in the compiler's
cache directory, beside the kernels they were built from: clearing that cache clears them too.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from torch._inductor.runtime.cache_dir_utils import cache_dir

log = logging.getLogger(__name__)
_ENGINE = Path(__file__).resolve().parents[1]


def portable_guards(entries: Sequence[Any]) -> list[bool]:
    """The guard filter of a step to be saved: the guards on its input tensors' shapes and on global
    state (grad mode and the like), which torch can write down; not those on the model's modules,
    which never change after loading (as for every compiled step), nor on Python objects (the file's
    name already holds what the step was traced for)."""
    portable = torch.compiler.keep_portable_guards_unsafe(entries)
    not_modules = torch.compiler.skip_guard_on_all_nn_modules_unsafe(entries)
    return [a and b for a, b in zip(portable, not_modules, strict=True)]


def _engine_digest() -> str:
    """The engine's sources, as one hash: a step traced by other code is another step."""
    digest = hashlib.sha256()
    for path in sorted(p for p in _ENGINE.rglob("*") if p.suffix in (".py", ".cpp")):
        digest.update(path.relative_to(_ENGINE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Read as the engine is imported (~5 ms): the code this process runs, even if the files change later
_ENGINE_DIGEST = _engine_digest()


def step_file(model: str, step: str) -> Path:
    """Where the step described by `model` and `step` (each a string holding everything it names)
    is kept."""
    # the compiled kernels are built for this many threads, and the step guards on it
    machine = f"{torch.backends.cpu.get_cpu_capability()} threads={torch.get_num_threads()}"
    versions = f"{torch.__version__} {transformers.__version__} {machine}"
    key = "\n".join((_ENGINE_DIGEST, versions, model, step))
    return Path(cache_dir()) / "studio-steps" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.step"


def guarded(step: Any, eager: Callable[..., Any]) -> Callable[..., Any]:
    """A step `aot_compile` made (or `load` read) that runs `eager` instead where its guards fail: it
    was traced for inputs of one shape under one global state (grad mode, torch's thread count), and
    torch raises rather than compile again when they change."""
    step.disable_guard_check()  # checked here instead
    warned = False

    def run(*args: Any) -> Any:
        nonlocal warned
        if step.guard_check(*args):
            return step(*args)
        if not warned:
            log.warning("a saved decode step's guards fail (%s); decoding eagerly", _failed_guard(step, args))
            warned = True
        return eager(*args)

    return run


def _failed_guard(step: Any, args: Sequence[Any]) -> str:
    """The guard that failed, as torch words it (its private API: the public one says only no)."""
    failed = step._artifacts.guard_manager.check_verbose(step.prepare_f_locals(*args))
    return "; ".join(failed.verbose_code_parts)[:300]


def load(path: Path, inputs: Sequence[Any]) -> Any | None:
    """The step saved at `path`, or None when there is none, it no longer loads, or its guards fail
    on `inputs` (example inputs of the step, made in inference mode): then it is removed and
    compiled anew. A step traced under another global state (a default dtype another thread had set
    for a moment, say) would otherwise fail its guards on every call of every later process."""
    if not path.exists():
        return None
    try:
        # torch rebuilds the guards from the example inputs saved with the step: read in inference mode
        # they are inference tensors, as when traced (and as every step's inputs are: engine.runtime.causal)
        with path.open("rb") as handle, torch.inference_mode():
            step: Any = torch.compiler.load_compiled_function(handle)  # an AOTCompiledFunction
            reason = None if step.guard_check(*inputs) else f"its guards fail here: {_failed_guard(step, inputs)}"
    except Exception as exc:  # a file from another torch, or cut short: compiling anew replaces it
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if reason is None:
        return step
    log.warning("the saved decode step %s does not serve (%s); compiling it anew", path.name, reason)
    path.unlink(missing_ok=True)
    return None


def save(step: Any, path: Path) -> None:
    """Keep a step `aot_compile` returned (written whole or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    step.save_compiled_function(os.fspath(path))
