"""An encoder-decoder request, decoded token by token on the engine thread."""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from transformers import DynamicCache, EncoderDecoderCache

from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.attention.choice import AttentionChoice, AttentionStats
from engine.models.loader import LoadedModel
from engine.platform.measure import PeakMemory
from engine.runtime.decoding import Decoding
from engine.runtime.prompt import Encoded


def stream_seq2seq(loaded: LoadedModel, request: GenerationRequest, encoded: Encoded) -> Iterator[str | Result]:
    """An encoder-decoder request, one sequence: text deltas as tokens arrive, then the Result. Each
    `next` runs one forward, so the scheduler can interleave it with other work."""
    options, model, device = request.options, loaded.model, loaded.device
    stats = AttentionStats()
    choice = AttentionChoice(options.attention, options.sparse, stats)

    def forward(**inputs):
        with torch.inference_mode():
            return model(**inputs, studio_choice=choice)

    decoding = Decoding(loaded, request, encoded, time.perf_counter())
    with PeakMemory(device) as memory:
        decoding.begin_prefill()
        with torch.inference_mode():
            encoder_out = model.get_encoder()(input_ids=decoding.encoded.input_ids, studio_choice=choice)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step = torch.tensor([[loaded.decoder_start, *request.answer_start]], device=device)
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
