"""One request's decoding state (token choice, stops, limits, streamed text, timings), the seq2seq
loop, label scoring and teacher-forced scoring; all timed. Causal requests decode in batches
(engine.runtime.batching), each row with its own Decoding.

Written as short explicit steps (not `model.generate`) so prefill and each decode step are timed
on their own, as optimum-benchmark defines them: prefill = the forward over the input up to the
first new token; decode tokens/s = (new tokens - 1) / (total - prefill).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.api.request import GenerationRequest
from engine.api.results import FinishReason, Metrics, Result, TokenLogprob
from engine.models.loader import LoadedModel
from engine.platform.errors import InputError
from engine.platform.fallbacks import FALLBACKS
from engine.platform.machine import machine_limits
from engine.platform.measure import decode_rate, now
from engine.runtime.kv_cache import kv_bytes_per_position
from engine.runtime.logprobs import token_logprob
from engine.runtime.prompt import Encoded, as_text, encode
from engine.runtime.sampling import TextStreamer, TokenPicker, stop_ids


def result_metrics(
    loaded,
    request,
    *,
    prefill_s,
    ttft_s,
    total_s,
    gen_s,
    n_in,
    n_new,
    peak,
    density,
    decode_path="eager",
    compile_s=None,
    batch_size=1.0,
    queue_s=0.0,
    proposed_tokens=0,
    accepted_tokens=0,
    decode_steps=0,
    draft_ms=0.0,
) -> Metrics:
    decode = decode_rate(n_new, prefill_s, gen_s)
    split = time_split(loaded, n_in, n_new, prefill_s, decode, batch_size, decode_steps)
    return Metrics(
        prefill_ms=prefill_s * 1000,
        ttft_ms=ttft_s * 1000,
        decode_tokens_per_s=decode,
        total_ms=total_s * 1000,
        input_tokens=n_in,
        new_tokens=n_new,
        peak_memory_mb=peak,
        model_memory_mb=loaded.footprint_mb,
        device=str(loaded.device),
        precision=loaded.precision,
        attention=request.options.attention,
        density=density,
        decode_path=decode_path,
        compile_s=compile_s,
        batch_size=batch_size,
        queue_ms=queue_s * 1000,
        fallbacks=FALLBACKS.active() or None,
        speculation=request.options.speculation,
        sampling=request.options.sampling_rule,
        proposed_tokens=proposed_tokens,
        accepted_tokens=accepted_tokens,
        decode_steps=decode_steps,
        draft_ms=draft_ms,
        decode_read_mb=split.decode_read_mb,
        decode_gb_per_s=split.decode_gb_per_s,
        prefill_gflop_per_s=split.prefill_gflop_per_s,
        machine_read_gb_per_s=split.machine_read_gb_per_s,
        machine_gflop_per_s=split.machine_gflop_per_s,
    )


@dataclass(frozen=True)
class TimeSplit:
    """Where a causal request's time went on CPU (Metrics' fields of the same names); None: not known."""

    prefill_gflop_per_s: float | None = None
    decode_read_mb: float | None = None
    decode_gb_per_s: float | None = None
    machine_read_gb_per_s: float | None = None
    machine_gflop_per_s: float | None = None


def time_split(
    loaded: LoadedModel,
    n_in: int,
    n_new: int,
    prefill_s: float,
    decode: float | None,
    batch_size: float,
    decode_steps: int,
) -> TimeSplit:
    """Where a causal request's time went on CPU: a decode step reads the weights once for its batch
    and each row's keys and values so far (here at the answer's middle, on average), so its rate is
    bytes a step x steps a second; a prefill multiplies ~2 FLOPs a parameter a token. Beside them,
    this machine's measured limits, where kept (engine.platform.machine)."""
    if loaded.spec.family != "causal" or loaded.device.type != "cpu" or not loaded.parameters:
        return TimeSplit()
    limits = machine_limits()
    read_mb = gb_per_s = None
    if decode is not None and decode_steps:
        per_row = kv_bytes_per_position(loaded.model.config, loaded.model.dtype) * (n_in + n_new / 2)
        read = loaded.footprint_bytes + batch_size * per_row
        steps_per_s = decode * decode_steps / (n_new - 1)  # a speculating step gives several tokens
        read_mb, gb_per_s = read / 2**20, read * steps_per_s / 1e9
    return TimeSplit(
        prefill_gflop_per_s=2 * loaded.parameters * n_in / prefill_s / 1e9 if prefill_s else None,
        decode_read_mb=read_mb,
        decode_gb_per_s=gb_per_s,
        machine_read_gb_per_s=limits.read_gb_per_s if limits else None,
        machine_gflop_per_s=limits.matmul_gflop_per_s if limits else None,
    )


def encode_prompt(loaded: LoadedModel, request: GenerationRequest) -> Encoded:
    """The prompt's ids, with room left in the context for what comes after it: a causal model's new
    tokens, or its longest candidate label. A causal branch's start (`answer_start`) follows the prompt,
    read in its prefill; a seq2seq decoder reads it after its start token (engine.runtime.seq2seq)."""
    check_vocabulary(loaded, request.answer_start)
    if loaded.spec.family != "causal":
        reserve = 0
    elif request.candidates is not None:
        reserve = max(len(as_text(loaded.tokenizer, " " + label, True)) for label in request.candidates)
    else:
        reserve = request.options.max_new_tokens + len(request.answer_start)
    encoded = encode(loaded, request, reserve)
    if loaded.spec.family != "causal" or not request.answer_start:
        return encoded
    start = encoded.input_ids.new_tensor([request.answer_start])
    return Encoded(torch.cat([encoded.input_ids, start], dim=1), encoded.truncated_tokens)


def check_vocabulary(loaded: LoadedModel, ids: tuple[int, ...]) -> None:
    if ids and max(ids) >= len(loaded.tokenizer):
        raise InputError(f"answer_start has token id {max(ids)}, outside {loaded.spec.name}'s vocabulary.")


class Decoding:
    """One request's output as it grows, whoever runs the forwards (a batch of causal sequences,
    engine.runtime.batching, or the seq2seq loop below): the next token from each step's logits, the stops
    and limits, the text to stream, and the timings its metrics come from."""

    def __init__(self, loaded: LoadedModel, request: GenerationRequest, encoded: Encoded, started: float):
        self.loaded, self.request, self.encoded = loaded, request, encoded
        self.pick = TokenPicker(loaded, request.options)
        self.stop_ids = stop_ids(loaded)
        self.streamer = TextStreamer(loaded.tokenizer, request.stop)
        self.start = list(request.answer_start)  # a branch's: taken as picked, before new_ids
        self.new_ids: list[int] = []
        self.logprobs: list[TokenLogprob] | None = [] if request.options.logprobs else None  # one per new id
        self.picked: int | None = None  # the last token picked
        self.seen = encoded.input_ids  # every token so far, prompt included (repetition penalty)
        if self.start and loaded.spec.family != "causal":  # a causal prompt holds its start already
            self.seen = torch.cat([self.seen, self.seen.new_tensor([self.start])], dim=1)
        self.finish: FinishReason | None = None  # set when done: stop | length | time_limit
        self.started = started  # perf_counter when the engine took it up (queue wait excluded)
        self.prefill_started = self.ttft_s = self.ended = 0.0
        self.prefill_s: float | None = None  # known once the first token is picked

    @property
    def token(self) -> int:
        """The last token accepted: the next step's input."""
        return self.new_ids[-1]

    def begin_prefill(self) -> None:
        self.prefill_started = now(self.loaded.device)

    def accept(self, logits: torch.Tensor, guess: int | None = None) -> str:
        """Pick the next token from `logits` (vocab,) and return the text it adds (held back near a
        stop string); sets `finish` when this was the last one. `guess`: the token speculated for this
        position (engine.runtime.speculation), which the pick keeps or replaces."""
        token = self.pick(logits, self.seen, guess)
        self.picked = token  # a stop token too, which new_ids never holds
        if self.prefill_s is None:  # the prefill ends with its token picked
            self.prefill_s = now(self.loaded.device) - self.prefill_started
        delta = ""
        if token in self.stop_ids:
            self.finish = "stop"
        else:
            answer = self.start + self.new_ids
            previous = answer[-1] if answer else None
            self.new_ids.append(token)
            if self.logprobs is not None:
                top = self.request.options.logprobs
                self.logprobs.append(token_logprob(self.loaded.tokenizer, logits, token, top, previous))
            self.seen = torch.cat([self.seen, self.seen.new_tensor([[token]])], dim=1)
            delta = self.streamer.update([*answer, token])
            if len(self.new_ids) == 1:
                self.ttft_s = time.perf_counter() - self.started
            limit = self.request.time_limit_s
            if self.streamer.stopped:
                self.finish = "stop"
            elif len(self.new_ids) >= self.request.options.max_new_tokens:
                self.finish = "length"
            elif limit is not None and time.perf_counter() - self.started > limit:
                self.finish = "time_limit"
        if self.finish is not None:
            self.ended = now(self.loaded.device)
            delta += self.streamer.flush()
        return delta

    def result(self, *, peak_mb: float, density: float, queue_s: float = 0.0, **path) -> Result:
        """The Result once finished; `path`: decode_path, compile_s, batch_size and the speculation
        counts where they apply."""
        total_s = time.perf_counter() - self.started
        metrics = result_metrics(
            self.loaded,
            self.request,
            prefill_s=self.prefill_s,
            ttft_s=self.ttft_s or total_s,
            total_s=total_s,
            gen_s=self.ended - self.prefill_started,
            n_in=self.encoded.input_ids.shape[1],
            n_new=len(self.new_ids),
            peak=peak_mb,
            density=density,
            queue_s=queue_s,
            **path,
        )
        assert self.finish is not None  # a Result is made once decoding finished
        return Result(
            text=self.streamer.text,
            metrics=metrics,
            token_ids=list(self.new_ids),
            truncated_tokens=self.encoded.truncated_tokens,
            finish_reason=self.finish,
            logprobs=self.logprobs,
        )
