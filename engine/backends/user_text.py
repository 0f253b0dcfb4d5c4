"""User text is data on a server too (engine.runtime.prompt does it locally).

vLLM, SGLang and llama.cpp's servers render the chat template around each message's content and
tokenize the whole string with control strings parsed, so `<|im_start|>` typed by a user becomes the
control token and can forge a turn; no OpenAI-protocol server we know has a switch to read content as
text. So the client breaks each control string before sending: an invisible WORD JOINER after its
first character (`<\u2060|im_start|>`), which no control token contains, leaves text the server's
tokenizer reads as text. The template's own control tokens are the server's: untouched.
"""

from __future__ import annotations

import functools
import re
from itertools import pairwise
from pathlib import Path

from engine.models.loader import resolve_location
from engine.models.registry import ModelSpec, list_models
from engine.platform.errors import ModelLoadError, UnknownModelError

JOINER = "\u2060"  # WORD JOINER: invisible, and in no tokenizer's control tokens
# Without the served model's tokenizer: the shapes control tokens commonly take (ChatML, Llama 3,
# Phi, GPT, DeepSeek's full-width bars; Llama 2 and Mistral; Gemma; SentencePiece's specials).
GENERIC = re.compile(r"(?=<[|｜][^\s|｜<>]+[|｜]>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>|<(?:bos|eos|pad|unk)>)")


def _starts(strings: set[str]) -> re.Pattern[str]:
    """Where any of `strings` begins (a lookahead: overlapping occurrences are all found); none: nowhere."""
    return re.compile("(?=" + "|".join(re.escape(s) for s in sorted(strings)) + ")" if strings else "(?!)")


def escape_controls(text: str, controls: re.Pattern[str] = GENERIC) -> str:
    """`text` with every occurrence of a control string (where `controls` matches, a lookahead) broken
    by a word joiner after its first character; text without one is returned unchanged. Every
    occurrence, overlapping ones too, gets a joiner inside it, and no control string spans one, so
    none is left."""
    cuts = sorted({match.start() + 1 for match in controls.finditer(text)})
    if not cuts:
        return text
    edges = [0, *cuts, len(text)]
    return JOINER.join(text[start:end] for start, end in pairwise(edges))


def _named_tokenizer(spec: ModelSpec) -> ModelSpec | Path:
    """What `spec.tokenizer` names: a registered local model, else a tokenizer directory."""
    assert spec.tokenizer is not None
    named = next((s for s in list_models() if s.name == spec.tokenizer), None)
    if named is not None and not named.remote:
        return named
    path = Path(spec.tokenizer).expanduser()
    if named is None and path.is_dir():
        return path
    raise UnknownModelError(
        f"{spec.name}: tokenizer = {spec.tokenizer!r} names no local model in the registry and no directory; "
        "name the served model's tokenizer (a registered model or a directory with its tokenizer files)."
    )


@functools.cache
def _special_tokens(source: ModelSpec | Path) -> re.Pattern[str]:
    """The tokenizer's special tokens (its BOS, EOS, chat markers and every added special token): the
    strings its servers parse as control tokens, and those transformers' `split_special_tokens`
    reads as text locally. Loaded once per process."""
    import transformers

    location = str(source) if isinstance(source, Path) else resolve_location(source)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read the tokenizer at {location}: {exc}") from exc
    added = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    # A one-character token cannot be broken, and one with a joiner in it would never be found
    return _starts({s for s in {*tokenizer.all_special_tokens, *added} if len(s) > 1 and JOINER not in s})


def controls(spec: ModelSpec) -> re.Pattern[str]:
    """The control strings to break in what a user sends `spec`'s server: its tokenizer's special
    tokens when the registry names it, else the common shapes (GENERIC)."""
    return _special_tokens(_named_tokenizer(spec)) if spec.tokenizer else GENERIC
