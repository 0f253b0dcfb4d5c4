"""What a request asks of attention (dense, or a sparse pattern with its settings) and the work it did."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SparseSettings:
    """The sparse pattern's parameters as kernels see them: a view of RunOptions (same names; these
    defaults are the options' own), hashable so plans and block masks can be cached by it."""

    window: int = 512
    sinks: int = 4
    block_size: int = 64
    pattern: str = "auto"
    budget: int = 256


@dataclass
class AttentionStats:
    """Work done by self-attention during a request, counted in (query, key) pairs."""

    computed_pairs: int = 0
    dense_pairs: int = 0

    @property
    def density(self) -> float:
        return self.computed_pairs / self.dense_pairs if self.dense_pairs else 1.0


@dataclass(frozen=True)
class AttentionChoice:
    mode: str = "dense"  # "dense" | "sparse"
    settings: SparseSettings = field(default_factory=SparseSettings)
    stats: AttentionStats | None = None


DENSE = AttentionChoice()


@dataclass(frozen=True)
class RowChoices:
    """A batch step whose rows attend differently (engine.runtime.batching): the distinct choices, in
    a fixed order. Each row's index into them comes with the step, as a tensor (its rows change from
    step to step; the choices, which a compiled step traces as constants, seldom do)."""

    choices: tuple[AttentionChoice, ...]

    @property
    def mode(self) -> str:
        return "mixed"


StepChoice = AttentionChoice | RowChoices  # what one forward's attention does: the same for every row, or per row
