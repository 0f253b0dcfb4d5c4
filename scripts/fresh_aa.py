"""A/A comparisons on a freshly launched app: does every verdict survive a fresh start (a compile in
the background) and other users?

Launches the app (embedded default model, default settings) as a user does, and as soon as its page
answers (a few seconds after launch) sends N comparisons one after another through its API: the same
settings on both sides (dense vs dense), on a short text, trials chosen by the studio. With `--users
K`, K other users stream chats the whole time, each reading an answer for THINK_S before sending the
next. Their browsers are simulated on this machine's own cores, where a real visitor's are not: the
client threads run at the lowest priority (nice 19), which the studio's measure of other work leaves
out. Every honest verdict is `same`;
the table shows each comparison's trials, intervals, the pairs redone because other work disturbed
them, and the most CPU other work took in a pair. One launch per value of --users.

    python scripts/fresh_aa.py --comparisons 20 --users 0,4
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from app_process import launch, stop, wait_for_page
from gradio_client import Client

SHORT_TEXT = (
    "The town council met on Monday to discuss the new park. Residents asked for more trees, a playground "
    "and benches near the pond. The council agreed to publish a plan by the end of the month."
)
THINK_S, CHAT_TOKENS = 2.0, 32
CHATS = ["Tell me about the moon.", "Give me three tips for better sleep.", "Why is the sky blue?", "Name some fruits."]


def _timing(t: dict) -> str:
    return f"{t['verdict']} {t['ratio']:.2f} ({t['low']:.2f}-{t['high']:.2f})"


@contextmanager
def chatting(url: str, users: int) -> Iterator[list[int]]:
    """`users` threads streaming chats until the block ends; yields the count of chats answered per user."""
    done, answered = threading.Event(), [0] * users

    def user(index: int) -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread and those it starts
        client = Client(url, verbose=False)
        while not done.is_set():
            job = client.submit(CHATS[index % len(CHATS)], [], "", max_new_tokens=CHAT_TOKENS, api_name="/chat")
            # The app streams every update; waiting on the result, not iterating the job (gradio_client
            # polls its updates every millisecond): a browser's CPU is not on the server's machine.
            job.result()
            answered[index] += 1
            done.wait(THINK_S)

    with ThreadPoolExecutor(users or 1) as pool:
        futures = [pool.submit(user, i) for i in range(users)]
        try:
            yield answered
        finally:
            done.set()
            for future in futures:
                future.result()


def run(comparisons: int, users: int, trials: int) -> str:
    """One launch: a row per comparison as it ends; returns the summary line."""
    launched = time.perf_counter()
    app, url = launch()
    try:
        wait_for_page(app, url)
        client = Client(url, verbose=False)
        same = {"prefill": 0, "total": 0}
        with chatting(url, users) as answered:
            for index in range(comparisons):
                started = time.perf_counter() - launched
                _, metrics = client.predict(
                    SHORT_TEXT, "short", compare="attention", compare_with="dense", trials=trials,
                    max_new_tokens=16, api_name="/summarize",
                )  # fmt: skip
                c = metrics["comparison"]
                same["prefill"] += c["prefill"]["verdict"] == "same"
                same["total"] += c["total"]["verdict"] == "same"
                other = f"{max(c['other_work_ms']):.0f}" if c["other_work_ms"] else "-"
                print(
                    f"| {users} | {index + 1} | {started:.1f} | {c['total']['trials']} | {_timing(c['prefill'])} | "
                    f"{_timing(c['total'])} | {c['redone']} | {c['disturbed']} | {other} | {metrics['a']['decode_path']} |",
                    flush=True,  # as each ends: a launch with users chatting takes half an hour
                )
        return (
            f"users {users}: prefill same {same['prefill']}/{comparisons}, total same {same['total']}/{comparisons}; "
            f"chats answered meanwhile {sum(answered)}"
        )
    finally:
        stop(app)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=20)
    parser.add_argument("--users", default="0,4", help="other users streaming chats, one launch per value")
    parser.add_argument("--trials", type=int, default=0, help="pairs per comparison (0: as the studio chooses)")
    args = parser.parse_args()
    print("| users | # | started s after launch | pairs | prefill B/A | total B/A | redone | disturbed | "
          "other work ms | decode path |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    summaries = [run(args.comparisons, int(users), args.trials) for users in args.users.split(",")]
    print("\n".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
