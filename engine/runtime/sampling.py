"""Choosing and showing tokens: greedy or sampled picks (transformers' logits processors), stop
tokens, and the text streamed as it grows."""

from __future__ import annotations

from typing import cast

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.api.options import RunOptions
from engine.models.loader import LoadedModel


class TokenPicker:
    """The next token: transformers' logits processors (banned tokens, repetition penalty, then
    temperature, top-k and top-p when sampling), then argmax or a draw (seeded: reproducible)."""

    def __init__(self, loaded: LoadedModel, options: RunOptions):
        gen_config = getattr(loaded.model, "generation_config", None)
        banned = [ids[0] for ids in getattr(gen_config, "bad_words_ids", None) or [] if len(ids) == 1]
        self.greedy = options.greedy
        self.processors = LogitsProcessorList()
        if banned:
            self.processors.append(SuppressTokensLogitsProcessor(banned, device=str(loaded.device)))
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

    def __call__(self, logits: torch.Tensor, seen: torch.Tensor, guess: int | None = None) -> int:
        """`logits`: (vocab,) for the next position; `seen`: (1, n) every token so far, prompt included;
        `guess`: a speculated token for this position (engine.runtime.speculation). A sample then keeps
        the guess with probability p(guess), else draws from p without it: the standard rejection rule
        for a guesser that proposes one token for certain, so each token's probability stays p."""
        # transformers annotates the ids as the legacy torch.LongTensor, which no tensor has statically
        scores = self.processors(cast(torch.LongTensor, seen), logits.float()[None])  # (1, vocab)
        if self.greedy:
            return int(scores.argmax())
        p = torch.softmax(scores[0], -1)
        if guess is not None:
            if float(torch.rand((), generator=self.generator, device=p.device)) < float(p[guess]):
                return guess
            p = p.clone()
            p[guess] = 0.0  # multinomial renormalizes what is left
        return int(torch.multinomial(p, 1, generator=self.generator))


def stop_ids(loaded: LoadedModel) -> set[int]:
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
