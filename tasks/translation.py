"""Translation: Marian pairs, T5 prefixes, or an instruction to a chat model."""

from __future__ import annotations

from engine import GenerationRequest, InputError, RunOptions, get_spec, require_text
from engine.api.frontends import CliFlag, CliTask

from .base import TaskInfo, instruct

LANGUAGES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
}

INFO = TaskInfo(
    name="translation",
    label="Translation",
    description="Translate text between languages.",
    examples=[
        ["The weather is nice today.", "en", "fr"],
        ["I would like a cup of coffee, please.", "en", "de"],
        ["Where is the train station?", "en", "es"],
    ],
)


def build_request(text: str, source: str, target: str, options: RunOptions) -> GenerationRequest:
    require_text(text)
    for code in (source, target):
        if code not in LANGUAGES:
            raise InputError(f"Unknown language {code!r}; choose one of {', '.join(LANGUAGES)}.")
    if source == target:
        raise InputError(f"Source and target are both {LANGUAGES[source]}: pick two different languages.")
    spec = get_spec(options.model)
    src, tgt = LANGUAGES[source], LANGUAGES[target]
    if spec.family == "seq2seq" and not spec.text_prefixes:
        pair = f"{source}-{target}"
        if pair not in spec.languages:
            offered = ", ".join(spec.languages) or "none listed"
            raise InputError(f"{spec.name} cannot translate {src} to {tgt} (pairs: {offered}); pick another model.")
        return GenerationRequest(options, text=text)
    if spec.text_prefixes:
        return GenerationRequest(options, text=f"translate {src} to {tgt}: {text}")
    messages = instruct(
        f"You are a professional translator from {src} to {tgt}.",
        f"Translate this {src} text to {tgt}. Reply with the translation only.\n\n{text}",
    )
    # Small chat models keep going after the translation; a paragraph break they add ends it.
    stop = () if "\n\n" in text.strip() else ("\n\n",)
    return GenerationRequest(options, messages=messages, stop=stop)


CLI = CliTask(
    INFO.name,
    (
        CliFlag("source", "en", "translation: source language code"),
        CliFlag("target", "fr", "translation: target language code"),
    ),
    lambda text, options, source, target: build_request(text, source, target, options),
)
