"""One request's decoding state (token choice, stops, limits, streamed text, timings), the seq2seq
loop, label scoring and teacher-forced scoring; all timed. Causal requests decode in batches
(engine.batching), each row with its own Decoding.

Written as short explicit steps (not `model.generate`) so prefill and each decode step are timed
on their own, as optimum-benchmark defines them: prefill = the forward over the input up to the
first new token; decode tokens/s = (new tokens - 1) / (total - prefill).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .attention import AttentionStats, use_attention
from .errors import InputError, TimeLimitError
from .fallbacks import FALLBACKS
from .loader import LoadedModel
from .metrics import PeakMemory, decode_rate, now
from .options import RunOptions
from .prompt import Encoded, encode
from .types import GenerationRequest, Metrics, Result
from .validation import check_labels


class TokenPicker:
    """The next token: transformers' logits processors (banned tokens, repetition penalty, then
    temperature, top-k and top-p when sampling), then argmax or a draw (seeded: reproducible)."""

    def __init__(self, loaded: LoadedModel, options: RunOptions):
        gen_config = getattr(loaded.model, "generation_config", None)
        banned = [ids[0] for ids in getattr(gen_config, "bad_words_ids", None) or [] if len(ids) == 1]
        self.greedy = options.greedy
        self.processors = LogitsProcessorList()
        if banned:
            self.processors.append(SuppressTokensLogitsProcessor(banned, device=loaded.device))
        if options.repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
        if not self.greedy:
            self.processors.append(TemperatureLogitsWarper(options.temperature))
            if options.top_k > 0:
                self.processors.append(TopKLogitsWarper(options.top_k))
            if options.top_p < 1.0:
                self.processors.append(TopPLogitsWarper(options.top_p))
        self.generator = None
        if not self.greedy and options.seed is not None:
            self.generator = torch.Generator(device=loaded.device).manual_seed(options.seed)

    def __call__(self, logits: torch.Tensor, seen: torch.Tensor) -> int:
        """`logits`: (vocab,) for the next position; `seen`: (1, n) every token so far, prompt included."""
        scores = self.processors(seen, logits.float()[None])  # (1, vocab)
        if self.greedy:
            return int(scores.argmax())
        return int(torch.multinomial(torch.softmax(scores[0], -1), 1, generator=self.generator))


def _stop_ids(loaded: LoadedModel) -> set[int]:
    ids = set()
    for source in (getattr(loaded.model, "generation_config", None), loaded.tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return ids


class TextStreamer:
    """Turns the growing list of new token ids into text deltas; holds back what could still
    become a stop string or an incomplete UTF-8 character."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tokenizer, self.stops = tokenizer, tuple(s for s in stops if s)
        self.emitted = 0
        self.text = ""
        self.stopped = False

    def update(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in self.stops:
            if (at := text.find(stop)) >= 0:
                text, self.stopped = text[:at], True
        self.text = text
        safe = len(text)
        if not self.stopped:
            if text.endswith("\ufffd"):
                safe -= 1
            for stop in self.stops:
                for k in range(min(len(stop) - 1, len(text)), 0, -1):
                    if text.endswith(stop[:k]):
                        safe = min(safe, len(text) - k)
                        break
        delta = text[self.emitted : safe]
        self.emitted = max(self.emitted, safe)
        return delta

    def flush(self) -> str:
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta


def _metrics(
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
) -> Metrics:
    decode = decode_rate(n_new, prefill_s, gen_s)
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
    )


def encode_prompt(loaded: LoadedModel, request: GenerationRequest) -> Encoded:
    """The prompt's ids; a causal model keeps room for max_new_tokens in its context."""
    reserve = request.options.max_new_tokens if loaded.spec.family == "causal" else 0
    return encode(loaded, request, reserve)


def _decoder_start(loaded: LoadedModel) -> int:
    start_id = loaded.model.generation_config.decoder_start_token_id
    return start_id if start_id is not None else loaded.model.config.decoder_start_token_id


def teacher_forced_logprobs(loaded: LoadedModel, request: GenerationRequest, continuation: list[int]) -> torch.Tensor:
    """(len(continuation), vocab) log-probabilities of the next token at each position of
    `continuation` after the request's prompt, in one forward under the request's attention:
    row i is the distribution that token continuation[i] was drawn from."""
    options, model, device = request.options, loaded.model, loaded.device
    prompt = encode_prompt(loaded, request).input_ids
    follow = torch.tensor([continuation[:-1]], dtype=torch.long, device=device)
    with torch.inference_mode(), use_attention(options.attention, options.sparse):
        if loaded.spec.family == "causal":
            ids = torch.cat([prompt, follow], dim=1)
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=len(continuation)).logits[0]
        else:
            start = torch.tensor([[_decoder_start(loaded)]], device=device)
            decoder_ids = torch.cat([start, follow], dim=1)
            logits = model(input_ids=prompt, decoder_input_ids=decoder_ids, use_cache=False).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


class Decoding:
    """One request's output as it grows, whoever runs the forwards (a batch of causal sequences,
    engine.batching, or the seq2seq loop below): the next token from each step's logits, the stops
    and limits, the text to stream, and the timings its metrics come from."""

    def __init__(self, loaded: LoadedModel, request: GenerationRequest, encoded: Encoded, started: float):
        self.loaded, self.request, self.encoded = loaded, request, encoded
        self.pick = TokenPicker(loaded, request.options)
        self.stop_ids = _stop_ids(loaded)
        self.streamer = TextStreamer(loaded.tokenizer, request.stop)
        self.new_ids: list[int] = []
        self.seen = encoded.input_ids  # every token so far, prompt included (repetition penalty)
        self.finish: str | None = None  # set when done: stop | length | time_limit
        self.started = started  # perf_counter when the engine took it up (queue wait excluded)
        self.prefill_started = self.ttft_s = self.ended = 0.0
        self.prefill_s: float | None = None  # known once the first token is picked

    @property
    def token(self) -> int:
        """The last token accepted: the next step's input."""
        return self.new_ids[-1]

    def begin_prefill(self) -> None:
        self.prefill_started = now(self.loaded.device)

    def accept(self, logits: torch.Tensor) -> str:
        """Pick the next token from `logits` (vocab,) and return the text it adds (held back near a
        stop string); sets `finish` when this was the last one."""
        token = self.pick(logits, self.seen)
        if self.prefill_s is None:  # the prefill ends with its token picked
            self.prefill_s = now(self.loaded.device) - self.prefill_started
        delta = ""
        if token in self.stop_ids:
            self.finish = "stop"
        else:
            self.new_ids.append(token)
            self.seen = torch.cat([self.seen, self.seen.new_tensor([[token]])], dim=1)
            delta = self.streamer.update(self.new_ids)
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
        """The Result once finished; `path`: decode_path, compile_s and batch_size where they apply."""
        total_s = time.perf_counter() - self.started
        metrics = _metrics(
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
        return Result(
            text=self.streamer.text,
            metrics=metrics,
            token_ids=list(self.new_ids),
            truncated_tokens=self.encoded.truncated_tokens,
            finish_reason=self.finish,
        )


def stream_seq2seq(loaded: LoadedModel, request: GenerationRequest) -> Iterator[str | Result]:
    """An encoder-decoder request, one sequence: text deltas as tokens arrive, then the Result. Each
    `next` runs one forward, so the scheduler can interleave it with other work."""
    options, model, device = request.options, loaded.model, loaded.device
    stats = AttentionStats()

    def forward(**inputs):
        # Entered per forward, never held across a `yield` (the consumer may resume in another context).
        with torch.inference_mode(), use_attention(options.attention, options.sparse, stats):
            return model(**inputs)

    decoding = Decoding(loaded, request, encode_prompt(loaded, request), time.perf_counter())
    with PeakMemory(device) as memory:
        decoding.begin_prefill()
        with torch.inference_mode(), use_attention(options.attention, options.sparse, stats):
            encoder_out = model.get_encoder()(input_ids=decoding.encoded.input_ids)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step = torch.tensor([[_decoder_start(loaded)]], device=device)
        density = None
        while True:
            out = forward(decoder_input_ids=step, encoder_outputs=encoder_out, past_key_values=cache, use_cache=True)
            delta = decoding.accept(out.logits[0, -1])
            density = stats.density if density is None else density  # the prefill's
            if delta:
                yield delta
            if decoding.finish is not None:
                break
            step = torch.tensor([[decoding.token]], device=device)
    yield decoding.result(peak_mb=memory.peak_mb(), density=density)


def score_labels(loaded: LoadedModel, request: GenerationRequest) -> Result:
    """Classification: P(label | input) from a classifier head, or from a causal LM's
    log-likelihood of each label as the answer (no free-text parsing)."""
    labels = list(check_labels(request.candidates))
    device = loaded.device
    stats = AttentionStats()
    options = request.options
    with PeakMemory(device) as memory, torch.inference_mode(), use_attention(options.attention, options.sparse, stats):
        t_start = time.perf_counter()
        if loaded.spec.family == "classifier":
            encoded = encode(loaded, request, 0)
            t_prefill = now(device)
            logits = loaded.model(input_ids=encoded.input_ids).logits[0].float()
            scores = _head_scores(loaded, logits, labels)
        else:  # causal (validation.check_family lets only these two families score labels)
            encoded = encode(loaded, request, max(len(loaded.tokenizer(" " + lab)["input_ids"]) for lab in labels))
            t_prefill = now(device)
            deadline = t_start + request.time_limit_s if request.time_limit_s else None
            scores = _likelihood_scores(loaded, encoded.input_ids, labels, deadline)
        prefill_s = now(device) - t_prefill
    total_s = time.perf_counter() - t_start
    metrics = _metrics(
        loaded,
        request,
        prefill_s=prefill_s,
        ttft_s=total_s,
        total_s=total_s,
        gen_s=prefill_s,
        n_in=encoded.input_ids.shape[1],
        n_new=0,
        peak=memory.peak_mb(),
        density=stats.density,
    )
    best = max(scores, key=scores.get)
    return Result(
        text=best,
        metrics=metrics,
        scores=scores,
        truncated_tokens=encoded.truncated_tokens,
        finish_reason="scored",
    )


def _head_scores(loaded: LoadedModel, logits: torch.Tensor, labels: list[str]) -> dict[str, float]:
    names = [loaded.model.config.id2label[i] for i in range(logits.shape[-1])]
    probs = torch.softmax(logits, -1).tolist()
    by_name = {n.lower(): p for n, p in zip(names, probs, strict=True)}
    wanted = [lab for lab in labels if lab.lower() in by_name]
    if len(wanted) < 2:
        raise InputError(
            f"{loaded.spec.name} predicts only the labels {', '.join(names)}; use at least two of them as candidates."
        )
    total = sum(by_name[lab.lower()] for lab in wanted)
    return {lab: by_name[lab.lower()] / total for lab in wanted}


def _likelihood_scores(
    loaded: LoadedModel, prompt_ids: torch.Tensor, labels: list[str], deadline: float | None = None
) -> dict[str, float]:
    """Prefill the prompt once, then score all labels in one batched forward over the shared cache
    (not started past `deadline`, a perf_counter time: scores of some labels would mean nothing)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    cache = DynamicCache(config=model.config)
    first = model(input_ids=prompt_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1]
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeLimitError(
            f"Reading the {prompt_ids.shape[1]}-token input took past the time limit, before any label was scored; "
            "shorten the text."
        )
    first_logp = torch.log_softmax(first.float(), -1)
    label_ids = [tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    width = max(len(ids) for ids in label_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = torch.tensor([ids + [pad] * (width - len(ids)) for ids in label_ids], device=loaded.device)
    totals = [float(first_logp[ids[0]]) for ids in label_ids]
    if width > 1:
        cache.batch_repeat_interleave(len(labels))
        # Right padding needs no mask: in causal attention the pads come after every scored token.
        logp = torch.log_softmax(model(input_ids=batch[:, :-1], past_key_values=cache).logits.float(), -1)
        for row, ids in enumerate(label_ids):
            for pos in range(1, len(ids)):
                totals[row] += float(logp[row, pos - 1, ids[pos]])
    probs = torch.softmax(torch.tensor(totals), -1).tolist()
    return dict(zip(labels, probs, strict=True))
