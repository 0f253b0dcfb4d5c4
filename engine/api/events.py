"""What the engine streams to every front end: text deltas as they arrive, then the final Result (a
Comparison for an A/B experiment). One event type from the engine to the browser."""

from __future__ import annotations

from dataclasses import dataclass

from engine.api.results import Comparison, Result


@dataclass(frozen=True)
class Chunk:
    """A streamed piece of output text; `run` says which run it belongs to (a comparison's label)."""

    text: str
    run: str = "dense"


Event = Chunk | Result | Comparison
