"""Many users at once through the app's API, as outside users would call it (gradio_client).

Starts the app (the embedded default model, default settings) in a subprocess on a loopback port,
once per mode: `batched` (the default) and `one-at-a-time` (STUDIO_MAX_BATCH=1, and the queue
settings the app had before batching: 1 request in the engine, 16 waiting). Then N users, each a
thread with its own client, send R mixed requests one after another (chat, code, classification,
summarization, translation). Prints per mode: failures (with the first message), p50 / p95 latency
and the wall time; the ratio of wall times is the speed-up.

    python scripts/load_test.py --users 8 --requests 4
    python scripts/load_test.py --users 24 --requests 2 --modes batched
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parent.parent
MODES = {
    "batched": {},
    "one-at-a-time": {"STUDIO_MAX_BATCH": "1", "STUDIO_CONCURRENCY": "1", "STUDIO_MAX_QUEUE": "16"},
}
CALLS = [  # (endpoint, arguments): the kinds of request the app serves, short answers
    ("/chat", ("What is the capital of France?", [], "Answer briefly.")),
    ("/generate_code", ("Reverse a string.", "python")),
    ("/classify", ("Great service, I loved it!", "positive, negative, neutral")),
    ("/chat", ("Give me one tip for better sleep.", [], "")),
    ("/summarize", ("The town council met on Monday to discuss the new park. " * 6, "short")),
    ("/translate", ("Where is the station?", "en", "fr")),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, **env_extra, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            client = Client(url, verbose=False)
            client.predict(*CALLS[0][1], api_name=CALLS[0][0])  # loads the model; the first request's costs
            return app, url
        except Exception:
            if app.poll() is not None:
                raise RuntimeError("the app exited during start-up") from None
            time.sleep(2)
    app.kill()
    raise RuntimeError("the app did not answer within 10 minutes")


def _user(url: str, user: int, requests: int) -> list[tuple[float, str | None]]:
    client = Client(url, verbose=False)
    outcomes = []
    for i in range(requests):
        endpoint, args = CALLS[(user + i) % len(CALLS)]
        start = time.perf_counter()
        try:
            client.predict(*args, api_name=endpoint)
            outcomes.append((time.perf_counter() - start, None))
        except Exception as exc:  # what the user saw
            outcomes.append((time.perf_counter() - start, f"{type(exc).__name__}: {exc}"))
    return outcomes


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_mode(mode: str, users: int, requests: int) -> dict:
    app, url = _start(MODES[mode])
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(users) as pool:
            outcomes = [o for seen in pool.map(lambda u: _user(url, u, requests), range(users)) for o in seen]
        wall = time.perf_counter() - start
    finally:
        app.terminate()
        app.wait(30)
    latencies = [t for t, error in outcomes if error is None] or [0.0]
    errors = [error for _, error in outcomes if error is not None]
    return {
        "mode": mode,
        "users": users,
        "requests": len(outcomes),
        "failures": len(errors),
        "p50_s": statistics.median(latencies),
        "p95_s": _percentile(latencies, 0.95),
        "wall_s": wall,
        "first_error": errors[0][:120] if errors else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4, help="per user, one after another")
    parser.add_argument("--modes", default=",".join(MODES), help="batched, one-at-a-time")
    args = parser.parse_args()
    rows = [run_mode(mode, args.users, args.requests) for mode in args.modes.split(",")]
    print("| mode | users | requests | failures | p50 s | p95 s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['users']} | {r['requests']} | {r['failures']} | {r['p50_s']:.1f} | "
              f"{r['p95_s']:.1f} | {r['wall_s']:.1f} |")  # fmt: skip
        if r["first_error"]:
            print(f"  first failure: {r['first_error']}")
    if len(rows) == 2:
        print(f"wall time, {rows[0]['mode']} / {rows[1]['mode']}: {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
