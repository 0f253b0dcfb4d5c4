"""The operator's settings: every STUDIO_* environment variable, declared, read and validated once.

`settings()` reads them on first use and keeps them; a bad value is one line naming the variable.
`python -m engine settings` prints the table below with the values in force (the README's table
is checked against these declarations by a test).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.platform.errors import StudioError


class SettingsError(StudioError):
    pass


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transformer-studio"


class Settings(BaseSettings):
    """Each field's alias is its environment variable; its description is the README's text."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    models: Path | None = Field(None, alias="STUDIO_MODELS", description="TOML file of extra models (see Models)")
    cache: Path = Field(
        default_factory=_default_cache,
        alias="STUDIO_CACHE",
        description="where the embedded model's converted cache and the compiled decode steps live (default ~/.cache/transformer-studio)",
    )
    device: str | None = Field(None, alias="STUDIO_DEVICE", description="cpu or cuda[:N]; default: CUDA when present")
    memory_budget_mb: float | None = Field(
        None,
        ge=0,
        alias="STUDIO_MEMORY_BUDGET_MB",
        description="the model pool's budget; least recently used models are evicted (default: 80% of GPU or 50% of RAM)",
    )
    four_bit_compute: Literal["fp32", "fp16", "bf16"] | None = Field(
        None,
        alias="STUDIO_4BIT_COMPUTE",
        description="compute dtype of nf4/fp4 matmuls (default fp16 on GPU, fp32 on CPU)",
    )
    sparse_kernel: Literal["blocked", "flex"] | None = Field(
        None, alias="STUDIO_SPARSE_KERNEL", description="sparse attention kernel (default flex on CUDA, blocked on CPU)"
    )
    flex_compile: bool = Field(
        False, alias="STUDIO_FLEX_COMPILE", description="compile FlexAttention on CPU too (always compiled on CUDA)"
    )
    max_batch: int = Field(
        8,
        ge=1,
        alias="STUDIO_MAX_BATCH",
        description="sequences of one model that decode together, one step for all (1: one request at a time)",
    )
    prefill_chunk: int = Field(
        32,
        ge=0,
        alias="STUDIO_PREFILL_CHUNK",
        description="tokens of a new prompt prefilled between two decode steps while other requests decode, so their steps wait for a chunk, not a whole prompt (0: whole prompts)",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        alias="STUDIO_CONCURRENCY",
        description="app: requests handed to the engine at once (default 2 x STUDIO_MAX_BATCH: a full batch decoding, as many waiting for the next step)",
    )
    max_queue: int | None = Field(
        None,
        ge=1,
        alias="STUDIO_MAX_QUEUE",
        description='app: requests waiting beyond those; more are told "queue is full" (default 8 x STUDIO_MAX_BATCH)',
    )
    time_limit_s: float = Field(
        180, gt=0, alias="STUDIO_TIME_LIMIT_S", description="app: decoding stops after this long and says so"
    )
    mcp: bool = Field(False, alias="STUDIO_MCP", description="app: also serve every endpoint as an MCP tool")
    remote_timeout_s: float = Field(
        30,
        gt=0,
        alias="STUDIO_REMOTE_TIMEOUT_S",
        description="remote models: the longest wait for a server's next bytes before the request fails",
    )
    compile_decode: bool = Field(
        True,
        alias="STUDIO_COMPILE_DECODE",
        description="decode causal models with a static cache and a compiled step, compiled in the background",
    )
    max_compiled_steps: int = Field(
        8,
        ge=0,
        alias="STUDIO_MAX_COMPILED_STEPS",
        description="compiled decode steps per model, one per length bucket, attention (a choice, or the set of a step's rows' choices) and row count (each about 100 MB for the embedded model); other shapes decode eagerly",
    )

    @property
    def app_concurrency(self) -> int:
        return self.concurrency or 2 * self.max_batch

    @property
    def app_max_queue(self) -> int:
        return self.max_queue or 8 * self.max_batch

    @classmethod
    def from_environment(cls) -> Settings:
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = first["loc"][0] if first["loc"] else "settings"
            raise SettingsError(f"{name}={first.get('input')!r}: {first['msg']}.") from None


@functools.cache
def settings() -> Settings:
    return Settings.from_environment()


def place_compiler_cache() -> None:
    """Inductor's cache (compiled kernels, saved decode steps: engine.runtime.saved_steps) goes beside
    the model cache, where it outlives a reboot, unless TORCHINDUCTOR_CACHE_DIR says otherwise. Called
    as the engine is imported, before torch's compiler is: its import fixes the directory for the
    process (in /tmp when unset)."""
    try:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings().cache / "inductor"))
    except SettingsError:
        pass  # said where the settings are first used


def reload() -> Settings:
    """Read the environment again (tests change it; a running app never does)."""
    settings.cache_clear()
    return settings()


def settings_table(current: Settings | None = None) -> str:
    """Markdown rows: variable, default, meaning, and (given `current`) the value in force."""
    head = "| variable | default | meaning |" + (" in force |" if current else "")
    rows = [head, "|---|---|---|" + ("---|" if current else "")]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=False)
        shown = "see meaning" if info.default_factory else "unset" if default is None else f"`{default}`"
        value = f" {getattr(current, name)} |" if current else ""
        rows.append(f"| `{info.alias}` | {shown} | {info.description} |{value}")
    return "\n".join(rows)
