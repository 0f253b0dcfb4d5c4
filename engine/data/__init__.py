"""Package data, read through `importlib.resources` so it is found in a wheel as in a checkout.

- `long_document.txt`: the GNU General Public License, version 2, verbatim (copied from Debian's
  `/usr/share/common-licenses/GPL-2`; the license permits verbatim copies). About 4,050 tokens for
  SmolLM2: long enough that a 512-token sparse window skips most of the attention work.
"""

from __future__ import annotations

from importlib.resources import files


def long_document() -> str:
    """The long sample document: the benchmark corpus and the summarization example."""
    return (files("engine") / "data" / "long_document.txt").read_text(encoding="utf-8")
