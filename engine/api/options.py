"""The run options, declared once: name, type, default, range or choices, one line of help.

`RunOptions` is the declaration. The request carries it, the CLI flags (`python -m engine run`),
the UI controls, the API/MCP parameters and their docs are generated from `OPTIONS`, and
`check_options` is the one validation of them. Adding an option is one field here plus the code
that uses it. Declaration order is the API's parameter order: new options go last.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from engine.attention.choice import SparseSettings
from engine.attention.patterns import PATTERNS
from engine.models.precision_menu import PRECISION_CHOICES, PRECISIONS
from engine.models.registry import DEFAULT_MODEL
from engine.platform.errors import AttentionConfigError, InputError, PrecisionError, StudioError

ATTENTION_MODES: tuple[str, ...] = ("dense", "sparse", "compare")  # compare = dense (A) vs sparse (B)
COMPARE_AXES: tuple[str, ...] = ("none", "attention", "precision", "model", "speculation")
SPECULATIONS: tuple[str, ...] = ("none", "prompt_lookup", "draft", "auto")
Group = Literal["main", "advanced", "sampling", "compare"]


PATTERN_CHOICES: tuple[str, ...] = ("auto", *PATTERNS)
SPARSE = SparseSettings()  # the sparse options' defaults: the kernels' own


@dataclass(frozen=True)
class Option:
    """One run option as front ends see it: declared with `option(...)` on a RunOptions field, then
    completed from the field (name, type, default) in OPTIONS."""

    help: str
    group: Group
    choice_source: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None  # a callable: resolved on use
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None  # UI slider step
    error: type[StudioError] = InputError  # what a bad value raises
    choice_notes: Mapping[str, str] | None = None  # a line per choice for menus (e.g. what runs a precision)
    name: str = ""
    type: type = str  # int, float, bool or str
    nullable: bool = False
    default: Any = None

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.choice_source() if callable(self.choice_source) else self.choice_source

    def coerce(self, value: Any) -> Any:
        """A front end's value (a slider's float, a CLI string, an empty number box) as this option's type."""
        if value is None or value == "":
            return None if self.nullable else self.default
        if self.type is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def check(self, value: Any) -> None:
        if value is None and self.nullable:
            return
        wanted = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}[self.type]
        numeric_ok = self.type is float and isinstance(value, int)
        if isinstance(value, bool) != (self.type is bool) or not (isinstance(value, self.type) or numeric_ok):
            raise self.error(f"{self.name} must be {wanted} (got {value!r}).")
        if (choices := self.choices) is not None and value not in choices:
            raise self.error(f"Unknown {self.name} {value!r}; choose one of {', '.join(choices)}.")
        low = -float("inf") if self.minimum is None else self.minimum
        high = float("inf") if self.maximum is None else self.maximum
        if self.type in (int, float) and not low <= value <= high:
            raise self.error(
                f"{self.name} must be between {_num(self.minimum)} and {_num(self.maximum)} (got {value})."
            )


def option(default: Any, help: str, group: Group = "advanced", choices=None, **limits: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, group, choices, **limits)})


@dataclass(frozen=True)
class RunOptions:
    """How to run a request. Every field is a user-facing option (see the module docstring)."""

    model: str = option(DEFAULT_MODEL, "a model name from the registry (`python -m engine models`)", "main")
    precision: str = option(
        "auto", f"weights and compute: {', '.join(PRECISIONS)} (int8/nf4/fp4: bitsandbytes; -wo: torchao weight-only)",
        "main", choices=PRECISIONS, error=PrecisionError, choice_notes={c.name: c.runs_on for c in PRECISION_CHOICES},
    )  # fmt: skip
    attention: str = option(
        "dense", "dense, sparse, or compare: dense (A) vs sparse (B) as an experiment, with intervals and the quality cost", "main",
        choices=ATTENTION_MODES,
    )  # fmt: skip
    window: int = option(
        SPARSE.window, "sparse: keys each query sees around itself (decoders: behind it)",
        minimum=1, maximum=32768, step=1, error=AttentionConfigError,
    )  # fmt: skip
    sinks: int = option(
        SPARSE.sinks, "sparse: attention-sink tokens (decoders) or global tokens (encoders)",
        minimum=0, maximum=1024, step=1, error=AttentionConfigError,
    )  # fmt: skip
    max_new_tokens: int = option(128, "most tokens to generate", minimum=1, maximum=4096, step=1)
    truncate: bool = option(False, "cut over-long input in the middle (reported) instead of failing")
    pattern: str = option(
        SPARSE.pattern, "sparse pattern: auto (sliding window + sinks for decoders, local + global for encoders) or a name",
        choices=PATTERN_CHOICES, error=AttentionConfigError,
    )  # fmt: skip
    temperature: float = option(
        0.0, "0 decodes greedily (deterministic); above 0 samples", "sampling", minimum=0.0, maximum=2.0, step=0.05
    )
    top_p: float = option(
        1.0, "sampling: keep the smallest set of tokens whose probability reaches this", "sampling",
        minimum=0.01, maximum=1.0, step=0.01,
    )  # fmt: skip
    seed: int | None = option(None, "sampling: a seed makes the sample reproducible (empty: random)", "sampling",
                              minimum=0, maximum=2**32 - 1)  # fmt: skip
    repetition_penalty: float = option(
        1.0, "above 1 discourages repeating tokens already seen (1 = off)", "sampling",
        minimum=1.0, maximum=2.0, step=0.05,
    )  # fmt: skip
    block_size: int = option(
        SPARSE.block_size, "sparse: query block of the kernel (a speed knob, not a semantic one)",
        minimum=1, maximum=1024, step=1, error=AttentionConfigError,
    )  # fmt: skip
    top_k: int = option(0, "sampling: keep only this many most likely tokens (0 keeps all)", "sampling",
                        minimum=0, maximum=1000, step=1)  # fmt: skip
    compare: str = option(
        "none", "A/B experiment: the one setting B changes (A is this request as set)", "compare",
        choices=COMPARE_AXES,
    )  # fmt: skip
    compare_with: str = option(
        "", "B's value of the compared setting: dense, sparse or a pattern; a precision; a model name; or a speculation",
        "compare",
    )  # fmt: skip
    trials: int = option(
        0, "compare: timed A/B trial pairs after the warm-up (0: as many as fit about 20 s, at least 3)", "compare",
        minimum=0, maximum=50, step=1,
    )  # fmt: skip
    budget: int = option(
        SPARSE.budget, "sparse, content patterns (quest, block_topk): keys each decode step picks by content, beyond the sinks and "
        "the window; block_topk's prefill reads budget // 64 key blocks per block of 64 queries",
        minimum=16, maximum=32768, step=16, error=AttentionConfigError,
    )  # fmt: skip
    speculation: str = option(
        "none", "guess tokens and check them all in one forward (the output stays the same; only the speed changes): "
        "prompt_lookup copies what followed the latest earlier occurrence of the last few tokens (prompt or answer); "
        "draft lets the same model at draft_precision guess; auto is prompt_lookup only while it pays, by the "
        "guesses kept so far and the measured cost of a checking step",
        choices=SPECULATIONS,
    )  # fmt: skip
    lookahead: int = option(7, "speculation: most tokens guessed per step", minimum=1, maximum=16, step=1)
    lookup_ngram: int = option(
        3, "prompt_lookup: the most last tokens matched against the earlier text (fewer when that many never recur)",
        minimum=1, maximum=8, step=1,
    )  # fmt: skip
    draft_precision: str = option(
        "gguf-q8", "draft: the cheaper precision of the same model that guesses (it reads the model's own KV cache, "
        "so both must compute in one dtype: e.g. gguf-q8 or int4-wo drafting for fp32)",
        choices=PRECISIONS, error=PrecisionError,
    )  # fmt: skip
    logprobs: int = option(
        0, "per generated token: its log-probability under the model and this many most likely alternatives "
        "(0: none), from the logits that chose it, before the sampling settings reshape them",
        "sampling", minimum=0, maximum=20, step=1,
    )  # fmt: skip

    @property
    def sparse(self) -> SparseSettings:
        return SparseSettings(**{f.name: getattr(self, f.name) for f in fields(SparseSettings)})

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def sampling_rule(self) -> str:
        """How each token is picked, as a token view states it: greedy, or the settings of a draw."""
        rule = [] if self.repetition_penalty == 1.0 else [f"repetition penalty {self.repetition_penalty:g}"]
        if self.greedy:
            return " · ".join(["greedy (the most likely token)", *rule])
        rule += [f"temperature {self.temperature:g}"]
        rule += [f"top-k {self.top_k}"] if self.top_k > 0 else []
        rule += [f"top-p {self.top_p:g}"] if self.top_p < 1.0 else []
        rule += [f"seed {self.seed}"] if self.seed is not None else []
        return "sampled: " + " · ".join(rule)

    @property
    def compares(self) -> bool:
        """An A/B experiment rather than one run (engine.api.validation.compare_sides makes its two sides)."""
        return self.attention == "compare" or self.compare != "none"


def _num(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def _declared() -> tuple[Option, ...]:
    hints = typing.get_type_hints(RunOptions)
    declared = []
    for f in fields(RunOptions):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]  # `int | None`: int, nullable
        kind = args[0] if args else hints[f.name]
        declared.append(replace(f.metadata["option"], name=f.name, type=kind, nullable=bool(args), default=f.default))
    return tuple(declared)


OPTIONS: tuple[Option, ...] = _declared()
OPTION_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def options_from(values: Mapping[str, Any]) -> RunOptions:
    """RunOptions from a front end's values by name (unknown names are a programming error);
    values are coerced to their types here and checked by `check_options`."""
    return RunOptions(**{name: OPTION_BY_NAME[name].coerce(value) for name, value in values.items()})


def check_options(options: RunOptions) -> None:
    """The one validation of every run option (type, range, choices), with the option's own error type."""
    for declared in OPTIONS:
        declared.check(getattr(options, declared.name))


def default(name: str) -> Any:
    return OPTION_BY_NAME[name].default
