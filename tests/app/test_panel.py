"""The results panel's views for each value of the metrics JSON (ui.results.panel_views): live,
stopped, a late update of a stopped stream, a result."""

from __future__ import annotations

from ui.results import STOPPED, hidden_views, panel_views, stop_mark

LIVE = {"streaming": {"output": {"tokens": 7, "ttft_ms": 120.0, "tokens_per_s": 21.5}}, "stream": "s1"}


def test_a_live_update_shows_its_speed_and_puts_the_last_results_views_away():
    line, *rest = panel_views(LIVE)
    assert line == "streaming — 7 tokens · 21.5 tok/s · TTFT 120 ms"
    assert len(rest) == len(hidden_views()) - 1


def test_stop_says_stopped_whichever_of_its_mark_and_a_late_update_is_handled_last():
    mark, stopped = stop_mark(LIVE)
    assert stopped == "s1"
    # the panel handles only the last value of several that came while it ran: either may be it
    assert panel_views(mark, stopped)[0] == STOPPED
    assert panel_views(LIVE, stopped)[0] == STOPPED
    # the next request's stream is live again
    assert panel_views({**LIVE, "stream": "s2"}, stopped)[0].startswith("streaming —")
