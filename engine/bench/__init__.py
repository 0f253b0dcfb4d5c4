"""Benchmarks (not tests): `python -m engine.bench`.

The suites each print a table and, with `--out DIR`, write JSON, CSV and a PNG plot:
- `attention` (default, `sweep.py`): sequence length x attention mode x precision. For each point the
  attention op alone at the model's shapes (one layer, prefill and one decode step) and the whole
  model (prefill ms, decode tokens/s, peak memory). Next to each sparse speedup: the theoretical
  limit, dense (query, key) pairs over the pairs the pattern allows.
- `precision` (`precision.py`): per precision, cold load time, footprint, prefill, decode tokens/s,
  and greedy agreement with fp32 (what `auto` on CPU is chosen from).
- `compare` (`experiments.py`): the comparison statistics on real requests: identical settings
  (every verdict should be `same`), dense vs sparse on the long document, fp32 vs nf4 on a chat.
- `frontier` (`frontier.py`): sparse decode patterns (the sliding window, Quest) at budgets, against
  dense on long prose and code: teacher-forced quality, attention-mass recall, density, speedups.
- `soak` (`soak.py`): N mixed requests through the engine, the resident memory and the engine's own
  accounting every 25 (`--requests`, default 500): whether the footprint stays flat.
- `speculation` (`speculation.py`): prompt lookup against plain decoding per task (summary, code
  edit, chat, translation) at 1 and 8 streams: the speed-up, guesses kept, identical output.
- `serve` (`serve.py`): N users at once, batched against one at a time; `--sizes` on the Space
  defaults built at their real sizes with random weights (`sizes.py`: the hub is out of reach here).
- `load` (`loading.py`): the gaps between the tokens of streams decoding while another model loads.
- `arrivals` (`arrivals.py`): the gaps between the tokens of streams decoding while new users' prompts
  are prefilled, per prefill chunk size, and the new users' time to first token.
- `logprobs` (`logprobs.py`): decode throughput with token log-probabilities asked for, against without.

Dense and sparse (and any A and B) are timed in interleaved, paired trials and compared with the
product's own statistics (engine.experiments.statistics): median ratio, 95% interval, verdict, noise floor.

Tables and files are made in `report.py`, the command line is `__main__.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.bench.precision import PRECISION_COLUMNS, PrecisionRow, precision_table
from engine.bench.report import format_table, machine, plot_precisions, plot_sweep, write_outputs
from engine.experiments.attention_op import time_attention_op
from engine.experiments.figures import to_frame
from engine.experiments.sweep import (
    DEFAULT_LENGTHS,
    QUICK_LENGTHS,
    SWEEP_COLUMNS,
    SweepConfig,
    SweepRow,
    corpus_ids,
    sweep,
    time_model,
)

if TYPE_CHECKING:
    from engine.bench.__main__ import main


def __getattr__(name: str):
    # `main` is imported on first use: importing `__main__` here would make `python -m engine.bench`
    # find it already imported and warn (runpy's "found in sys.modules ... prior to execution").
    if name == "main":
        from engine.bench.__main__ import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_LENGTHS",
    "PRECISION_COLUMNS",
    "QUICK_LENGTHS",
    "SWEEP_COLUMNS",
    "PrecisionRow",
    "SweepConfig",
    "SweepRow",
    "corpus_ids",
    "format_table",
    "machine",
    "main",
    "plot_precisions",
    "plot_sweep",
    "precision_table",
    "sweep",
    "time_attention_op",
    "time_model",
    "to_frame",
    "write_outputs",
]
