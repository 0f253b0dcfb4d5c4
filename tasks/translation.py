"""Translation: Marian pairs, T5 prefixes, or an instruction to a chat model."""

from __future__ import annotations

from engine import GenerationRequest, InputError, RunOptions, get_spec, require_text

from .base import Api, Input, Output, Tab, Task, instruct

LANGUAGES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
}


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


TASK = Task(
    name="translation",
    tab=Tab("Translation", "Translate text between languages.", "Translate", order=10, swap=("source", "target")),
    inputs=(
        Input("text", "Text", "the text to translate", lines=4),
        Input("source", "From", "source language code (en, fr, de, es, it, pt)", "en", tuple(LANGUAGES)),
        Input("target", "To", "target language code, different from the source", "fr", tuple(LANGUAGES)),
    ),
    builder=build_request,
    output=Output("text", "Translation"),
    api=Api(
        "translate",
        "Translate text between languages with the chosen model, precision and attention.",
        "the translation (A and B labelled, in a comparison) and the measured metrics as JSON",
    ),
    examples=[
        ["The weather is nice today.", "en", "fr"],
        ["I would like a cup of coffee, please.", "en", "de"],
        ["Where is the train station?", "en", "es"],
    ],
)
