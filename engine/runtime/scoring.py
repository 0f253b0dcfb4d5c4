"""Forwards that score rather than generate: candidate labels (classification) and a given
continuation, teacher-forced (a comparison's quality cost)."""

from __future__ import annotations

import time

import torch
from transformers import DynamicCache

from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.api.validation import check_labels
from engine.attention.choice import AttentionChoice, AttentionStats
from engine.models.loader import LoadedModel
from engine.platform.errors import InputError, TimeLimitError
from engine.platform.measure import PeakMemory, now
from engine.runtime.decoding import result_metrics
from engine.runtime.prompt import Encoded, as_text


def teacher_forced_logprobs(
    loaded: LoadedModel, prompt: torch.Tensor, continuation: list[int], choice: AttentionChoice
) -> torch.Tensor:
    """(len(continuation), vocab) log-probabilities of the next token at each position of
    `continuation` after the `prompt` ids (1, n), in one forward under the attention `choice`: row i
    is the distribution that token continuation[i] was drawn from."""
    model, device = loaded.model, loaded.device
    follow = torch.tensor([continuation[:-1]], dtype=torch.long, device=device)
    with torch.inference_mode():
        if loaded.spec.family == "causal":
            ids = torch.cat([prompt, follow], dim=1)
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=len(continuation), studio_choice=choice)
        else:
            start = torch.tensor([[loaded.decoder_start]], device=device)
            decoder_ids = torch.cat([start, follow], dim=1)
            logits = model(input_ids=prompt, decoder_input_ids=decoder_ids, use_cache=False, studio_choice=choice)
    return torch.log_softmax(logits.logits[0].float(), dim=-1)


def score_labels(loaded: LoadedModel, request: GenerationRequest, encoded: Encoded) -> Result:
    """Classification: P(label | input) from a classifier head, or from a causal LM's
    log-likelihood of each label as the answer (no free-text parsing)."""
    assert request.candidates is not None  # only a request with candidates is scored (engine.runtime.runner)
    labels = list(check_labels(request.candidates))
    device = loaded.device
    stats = AttentionStats()
    choice = AttentionChoice(request.options.attention, request.options.sparse, stats)
    with PeakMemory(device) as memory, torch.inference_mode():
        t_start = time.perf_counter()
        if loaded.spec.family == "classifier":
            t_prefill = now(device)
            logits = loaded.model(input_ids=encoded.input_ids, studio_choice=choice).logits[0].float()
            scores = _head_scores(loaded, logits, labels)
        else:  # causal (validation.check_family lets only these two families score labels)
            t_prefill = now(device)
            deadline = t_start + request.time_limit_s if request.time_limit_s else None
            scores = _likelihood_scores(loaded, encoded.input_ids, labels, choice, deadline)
        prefill_s = now(device) - t_prefill
    total_s = time.perf_counter() - t_start
    metrics = result_metrics(
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
    best = max(scores, key=lambda label: scores[label])
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
    loaded: LoadedModel,
    prompt_ids: torch.Tensor,
    labels: list[str],
    choice: AttentionChoice,
    deadline: float | None = None,
) -> dict[str, float]:
    """Prefill the prompt once, then score all labels in one batched forward over the shared cache
    (not started past `deadline`, a perf_counter time: scores of some labels would mean nothing)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    cache = DynamicCache(config=model.config)
    first = model(
        input_ids=prompt_ids, past_key_values=cache, use_cache=True, logits_to_keep=1, studio_choice=choice
    ).logits[0, -1]
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeLimitError(
            f"Reading the {prompt_ids.shape[1]}-token input took past the time limit, before any label was scored; "
            "shorten the text."
        )
    first_logp = torch.log_softmax(first.float(), -1)
    label_ids = [as_text(tokenizer, lab) for lab in labels]  # a label is text, whatever it holds
    width = max(len(ids) for ids in label_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = torch.tensor([ids + [pad] * (width - len(ids)) for ids in label_ids], device=loaded.device)
    totals = [float(first_logp[ids[0]]) for ids in label_ids]
    if width > 1:
        cache.batch_repeat_interleave(len(labels))
        # Right padding needs no mask: in causal attention the pads come after every scored token.
        logp = torch.log_softmax(
            model(input_ids=batch[:, :-1], past_key_values=cache, studio_choice=choice).logits.float(), -1
        )
        for row, ids in enumerate(label_ids):
            for pos in range(1, len(ids)):
                totals[row] += float(logp[row, pos - 1, ids[pos]])
    probs = torch.softmax(torch.tensor(totals), -1).tolist()
    return dict(zip(labels, probs, strict=True))
