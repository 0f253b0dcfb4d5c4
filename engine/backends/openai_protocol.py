"""Models served by another process (vLLM, SGLang, llama.cpp's server) over the OpenAI HTTP protocol,
through the `openai` client: every task, with the metrics a local model gets, measured here by the
client from the stream, and the server's own numbers beside them when it sends any.

Precision and attention are the server's. The client's timings include the network and the
server's queue: that is what a user of the server waits. A remote request does no torch work, so
it runs on the request's thread, not the engine's (engine.runtime.runner), unless it is measured alone.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletionMessageParam

from engine.api.request import GenerationRequest, Message
from engine.api.results import Alternative, FinishReason, Metrics, Result, TokenLogprob
from engine.api.validation import check_labels
from engine.backends.user_text import controls, escape_controls
from engine.models.registry import ModelSpec
from engine.platform.errors import RemoteError
from engine.platform.measure import decode_rate
from engine.platform.settings import settings

SERVER = "server"  # the precision and attention that metrics show: the server's own
CONNECT_TIMEOUT_S = 5.0
TOP_LOGPROBS = 20  # the most the protocol allows
# other finish reasons (content filter, tool calls) end the text too
FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


@functools.cache
def _client(location: str, api_key: str) -> openai.OpenAI:
    # No retries: a failure is reported at once, within the request's time, and the user decides.
    timeout = openai.Timeout(settings().remote_timeout_s, connect=CONNECT_TIMEOUT_S)
    return openai.OpenAI(base_url=location, api_key=api_key, max_retries=0, timeout=timeout)


def _served_name(spec: ModelSpec) -> str:
    assert spec.served_name is not None  # the registry refuses a remote model without one
    return spec.served_name


def client(spec: ModelSpec) -> openai.OpenAI:
    key = "none"  # the client needs one; a server without keys ignores it
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env, "")
        if not key:
            raise RemoteError(f"{spec.name}: set {spec.api_key_env} to the server's API key (a Space: a secret).")
    return _client(spec.location, key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def talking_to(spec: ModelSpec, what: str) -> Iterator[None]:
    """Every failure of the server or of the way to it, as one sentence naming the model and what failed."""
    where = f"{spec.name} ({spec.location})"
    try:
        yield
    except openai.APITimeoutError:
        raise RemoteError(
            f"{where}: no answer within {settings().remote_timeout_s:g} s while {what} (STUDIO_REMOTE_TIMEOUT_S)."
        ) from None
    except openai.APIConnectionError as exc:
        cause = _first_line(exc.__cause__) if exc.__cause__ else _first_line(exc)
        raise RemoteError(f"{where}: the connection failed while {what} ({cause}).") from None
    except openai.APIStatusError as exc:
        raise RemoteError(
            f"{where}: the server answered HTTP {exc.status_code} while {what} ({_first_line(exc)})."
        ) from None
    except (openai.APIError, ValueError) as exc:  # a malformed response or stream (e.g. a chunk that is not JSON)
        raise RemoteError(f"{where}: the server sent something unreadable while {what} ({_first_line(exc)}).") from None


def _sampling(request: GenerationRequest, chat: bool = True) -> dict:
    options = request.options
    params: dict = {"max_tokens": options.max_new_tokens, "temperature": options.temperature, "top_p": options.top_p}
    if options.seed is not None:
        params["seed"] = options.seed
    if request.stop:
        params["stop"] = list(request.stop)
    if options.top_k:
        params["extra_body"] = {"top_k": options.top_k}  # not in OpenAI's protocol; vLLM, SGLang and llama.cpp read it
    if options.logprobs:  # chat asks with a flag and a count; completions with the count alone
        params |= {"logprobs": True, "top_logprobs": options.logprobs} if chat else {"logprobs": options.logprobs}
    return params


def chat_messages(spec: ModelSpec, messages: tuple[Message, ...]) -> list[ChatCompletionMessageParam]:
    """The messages as sent: every content is the user's (a system prompt and a chat's history
    too), with its control strings broken so that the server reads them as text (engine.backends.user_text)."""
    strings = controls(spec)
    sent = [{"role": m.role, "content": escape_controls(m.content, strings)} for m in messages]
    return cast("list[ChatCompletionMessageParam]", sent)  # the stubs type each role apart; these are the protocol's


def completion_prompt(spec: ModelSpec, text: str) -> str:
    """A plain-text prompt as sent: the user's text, its control strings broken like a message's."""
    return escape_controls(text, controls(spec))


def _metrics(
    spec: ModelSpec,
    *,
    started: float,
    first: float | None,
    last: float | None,
    ended: float,
    new_tokens: int,
    input_tokens: int | None,
    server: dict[str, float] | None,
    sampling: str = "greedy",
) -> Metrics:
    decode = decode_rate(new_tokens, first, last) if first is not None and last is not None else None
    return Metrics(
        prefill_ms=server.get("prompt_ms") if server else None,
        ttft_ms=((first or ended) - started) * 1000,
        decode_tokens_per_s=decode,
        total_ms=(ended - started) * 1000,
        input_tokens=input_tokens,
        new_tokens=new_tokens,
        peak_memory_mb=None,
        model_memory_mb=None,
        device=f"remote {urlsplit(spec.location).netloc}",
        precision=SERVER,
        attention=SERVER,
        decode_path=SERVER,
        density=None,
        server=server,
        sampling=sampling,
    )


def _server_numbers(extra: dict | None) -> dict[str, float] | None:
    """llama.cpp's server reports its own timings with the last chunk; others send none."""
    timings = (extra or {}).get("timings")
    if not isinstance(timings, dict):
        return None
    return {k: float(v) for k, v in timings.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def stream_remote(spec: ModelSpec, request: GenerationRequest) -> Iterator[str | Result]:
    """Text deltas as the server streams them, then the Result. Chat messages go to chat completions,
    plain text to completions. Closing this iterator closes the HTTP stream (the server stops)."""
    api = client(spec)
    limit = request.time_limit_s
    texts: list[str] = []
    first = last = None
    chunks, usage, server, finish = 0, None, None, None
    started = time.perf_counter()
    logprobs: list[TokenLogprob] | None = [] if request.options.logprobs else None
    # A connection cut mid-stream reaches the reader as the client's APIConnectionError too.
    with talking_to(spec, "streaming the answer"):
        if request.messages is not None:
            stream = api.chat.completions.create(
                model=_served_name(spec), messages=chat_messages(spec, request.messages), stream=True,
                stream_options={"include_usage": True}, **_sampling(request),
            )  # fmt: skip
        else:
            stream = api.completions.create(
                model=_served_name(spec), prompt=completion_prompt(spec, request.text or ""), stream=True,
                stream_options={"include_usage": True}, **_sampling(request, chat=False),
            )  # fmt: skip
        with stream:
            for chunk in stream:
                usage = chunk.usage or usage
                server = _server_numbers(chunk.model_extra) or server
                for choice in chunk.choices:
                    if logprobs is not None and choice.logprobs:
                        logprobs += _token_logprobs(choice.logprobs)
                    text = choice.delta.content if request.messages is not None else choice.text
                    if text:
                        last = time.perf_counter()
                        first = first or last
                        chunks += 1
                        texts.append(text)
                        yield text
                    finish = choice.finish_reason or finish
                if limit is not None and first is not None and time.perf_counter() - started > limit:
                    finish = "time_limit"
                    break
    if finish is None:
        raise RemoteError(
            f"{spec.name} ({spec.location}): the server ended the stream mid-answer, after {chunks} pieces of text "
            "and no finish reason; the answer is incomplete."
        )
    # Token counts: the server's usage when it sends it (vLLM does); else one token per streamed
    # piece, which is how llama.cpp's server streams.
    new_tokens = usage.completion_tokens if usage else chunks
    metrics = _metrics(
        spec, started=started, first=first, last=last, ended=time.perf_counter(), new_tokens=new_tokens,
        input_tokens=usage.prompt_tokens if usage else None, server=server, sampling=request.options.sampling_rule,
    )  # fmt: skip
    reason: FinishReason = "time_limit" if finish == "time_limit" else FINISH.get(finish, "stop")
    yield Result(text="".join(texts), metrics=metrics, finish_reason=reason, logprobs=logprobs)


def _token_logprobs(sent) -> list[TokenLogprob]:
    """A chunk's log-probabilities as the server words them: chat's `content` list, or the
    completions' parallel lists (tokens, token_logprobs, and a {token: logprob} per token)."""
    if hasattr(sent, "content"):
        return [
            TokenLogprob(t.token, None, t.logprob, [Alternative(a.token, a.logprob) for a in t.top_logprobs])
            for t in sent.content or []
        ]
    tops = sent.top_logprobs or [{}] * len(sent.tokens or [])
    return [
        TokenLogprob(token, None, logprob, [Alternative(t, p) for t, p in sorted(top.items(), key=lambda a: -a[1])])
        for token, logprob, top in zip(sent.tokens or [], sent.token_logprobs or [], tops, strict=True)
    ]


def label_scores(top: dict[str, float], labels: tuple[str, ...]) -> dict[str, float]:
    """P(label) from the log-probabilities of the answer's first token: each label gets the mass of
    the listed tokens that begin it and no other label (case and spaces ignored; a token of one
    letter counts only as a whole label), renormalised over the labels. A label none of whose first
    tokens is listed gets 0."""
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in top.items():
        piece = token.strip().lower()
        if not piece or (len(piece) < 2 and not any(piece == label.lower() for label in labels)):
            continue
        begun = [label for label in labels if label.lower().startswith(piece)]
        if len(begun) == 1:
            mass[begun[0]] += math.exp(logprob)
    total = sum(mass.values())
    if total == 0:
        raise RemoteError(
            f"None of the labels begins one of the server's {len(top)} most likely answers "
            f"({', '.join(list(top)[:5])}, ...): use labels the model would answer with."
        )
    return {label: p / total for label, p in mass.items()}


def score_remote(spec: ModelSpec, request: GenerationRequest) -> Result:
    """Classification on a server: label probabilities from the top log-probabilities of the chat
    answer's first token (the protocol's `logprobs`; what vLLM, SGLang and llama.cpp's server offer)."""
    # The caller routes classification here, and a remote model is asked as chat (tasks.classification)
    assert request.candidates is not None and request.messages is not None
    labels = check_labels(request.candidates)
    started = time.perf_counter()
    with talking_to(spec, "scoring the labels"):
        response = client(spec).chat.completions.create(
            model=_served_name(spec), messages=chat_messages(spec, request.messages), max_tokens=1, temperature=0.0,
            logprobs=True, top_logprobs=TOP_LOGPROBS,
        )  # fmt: skip
    ended = time.perf_counter()
    logprobs = response.choices[0].logprobs if response.choices else None
    if not logprobs or not logprobs.content or not logprobs.content[0].top_logprobs:
        raise RemoteError(
            f"{spec.name} ({spec.location}): the server returns no top log-probabilities, which classification "
            "needs (the protocol's logprobs and top_logprobs; llama-cpp-python's server: start it with --logits_all true)."
        )
    top = {t.token: t.logprob for t in logprobs.content[0].top_logprobs}
    scores = label_scores(top, labels)
    usage = response.usage
    metrics = _metrics(
        spec, started=started, first=ended, last=ended, ended=ended, new_tokens=0,
        input_tokens=usage.prompt_tokens if usage else None, server=_server_numbers(response.model_extra),
    )  # fmt: skip
    return Result(text=max(scores, key=scores.__getitem__), metrics=metrics, scores=scores, finish_reason="scored")
