"""Where a click in a token view branches (ui.branches), from the panel's payload alone."""

from __future__ import annotations

import pytest

from engine import InputError, Metrics, Result, to_payload
from engine.api.results import Alternative, TokenLogprob
from ui.branches import branch_point, branched


def payload(remote: bool = False) -> dict:
    def token(text: str, id_: int, other: str, other_id: int) -> TokenLogprob:
        ids = (None, None) if remote else (id_, other_id)
        return TokenLogprob(text, ids[0], -0.1, [Alternative(text, -0.1, ids[0]), Alternative(other, -2.5, ids[1])])

    tokens = [token("Le", 1, "La", 2), token(" chat", 3, " chien", 4), token(" dort", 5, " mange", 6)]
    metrics = Metrics(prefill_ms=1, ttft_ms=1, decode_tokens_per_s=1, total_ms=1, input_tokens=1, new_tokens=3,
                      peak_memory_mb=1, model_memory_mb=1, device="cpu", precision="fp32", attention="dense")  # fmt: skip
    return to_payload(Result("Le chat dort", metrics, [1, 3, 5], logprobs=tokens))


def test_a_branch_keeps_the_tokens_before_the_click_and_takes_the_alternative():
    point = branch_point(payload(), {"at": 1, "token": 4})
    assert point.start == (1, 4)
    assert [t.token for t in point.kept] == ["Le", " chien"] and point.kept[1].logprob == -2.5
    assert (point.branch.at, point.branch.was, point.branch.now) == (1, " chat", " chien")
    assert point.branch.original == "Le chat dort"
    # its final metrics cover the whole answer and say where it branched
    generated = payload()
    generated["logprobs"] = generated["logprobs"][2:]
    [(_, final)] = branched(iter([("Le chien dort", generated)]), point)
    assert [t["token"] for t in final["logprobs"]] == ["Le", " chien", " dort"]
    assert final["branch"]["now"] == " chien"


@pytest.mark.parametrize(
    ("metrics", "clicked", "message"),
    [
        (None, {"at": 0, "token": 2}, "no token view"),
        ("local", {"at": 7, "token": 2}, "not in the answer"),
        ("local", {"at": 0, "token": 99}, "not among"),
        ("remote", {"at": 0, "token": 2}, "remote server"),
    ],
)
def test_a_click_that_cannot_branch_says_why(metrics, clicked, message):
    found = {None: None, "local": payload(), "remote": payload(remote=True)}[metrics]
    with pytest.raises(InputError, match=message):
        branch_point(found, clicked)
