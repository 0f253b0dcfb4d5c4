"""The model registry: built-in specs (engine/data/models.toml) plus user specs from a TOML file
(STUDIO_MODELS) in the same format.

A user file looks like::

    [[model]]
    name = "my-marian"
    source = "local"              # embedded | local | gguf | hub | openai
    location = "/models/opus-mt-en-de"
    family = "seq2seq"            # causal | seq2seq | classifier
    tasks = ["translation"]
    context_length = 512
    license = "CC-BY-4.0"

    [[model]]                     # a remote engine (vLLM, SGLang, llama.cpp server): engine.backends.openai_protocol
    name = "llamacpp-smollm2"
    source = "openai"
    location = "http://127.0.0.1:8080/v1"   # the server's OpenAI base URL
    served_name = "smollm2"                 # the model name the server knows
    family = "causal"
    api_key_env = "STUDIO_REMOTE_KEY"      # optional: the environment variable holding its key
    tokenizer = "smollm2-135m-instruct"     # optional: its tokenizer, a registered model or a directory

Names that are not registered still work when prefixed: `hub:org/name`, `local:/dir`,
`gguf:/path/model.gguf`; their family is read from the model's config at load time. A remote
server only ever comes from a registry file: no request can point the app at a URL.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Literal

from engine.platform.errors import UnknownModelError
from engine.platform.settings import settings

Source = Literal["embedded", "local", "gguf", "hub", "openai"]
DEFAULT_MODEL = "smollm2-135m-instruct"  # the embedded model: works offline
SOURCES: tuple[str, ...] = ("embedded", "local", "gguf", "hub", "openai")
FAMILIES: tuple[str, ...] = ("causal", "seq2seq", "classifier")
TASKS: tuple[str, ...] = ("translation", "summarization", "dialogue", "classification", "code")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: Source
    location: str  # hub id, directory, GGUF path, or a server's base URL; "embedded": the GGUF inside the package
    family: str | None  # None: read from the model's config when loaded
    tasks: tuple[str, ...] = TASKS
    context_length: int | None = None  # None: read from the model's config
    license: str = "see model card"
    description: str = ""
    languages: tuple[str, ...] = field(default=())  # translation models: "src-tgt" pairs
    text_prefixes: bool = False  # T5-style: the task is named in the input ("summarize: ...")
    served_name: str | None = None  # source "openai": the model name the server knows
    api_key_env: str | None = None  # source "openai": the environment variable holding the server's key
    # source "openai": the served model's tokenizer (a registered model's name or a directory), whose
    # control strings are broken in what a user sends (engine.backends.user_text)
    tokenizer: str | None = None
    best_for: tuple[str, ...] = ()  # tasks it should be the default of, where it can load (engine.models.defaults)

    def serves(self, task: str) -> bool:
        return task in self.tasks

    @property
    def remote(self) -> bool:
        """Served by another process over the OpenAI protocol (engine.backends.openai_protocol), not loaded here."""
        return self.source == "openai"


_PREFIXES: dict[str, Source] = {"hub:": "hub", "local:": "local", "gguf:": "gguf"}


def _parse(text: str, where: str) -> list[ModelSpec]:
    """Specs from registry TOML (the built-in file and a user's file alike)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UnknownModelError(f"Cannot read the model file {where}: {exc}.") from exc
    allowed = {f.name for f in fields(ModelSpec)}
    specs = []
    for entry in data.get("model", []):
        unknown = set(entry) - allowed
        if unknown or "name" not in entry or entry.get("source") not in SOURCES:
            raise UnknownModelError(
                f"Bad entry in {where}: {entry!r} (needs name, source in {SOURCES}, location; "
                f"unknown keys: {sorted(unknown)})."
            )
        family = entry.get("family")
        if family is not None and family not in FAMILIES:
            raise UnknownModelError(f"Bad family {family!r} in {where}; use one of {FAMILIES}.")
        if entry["source"] == "openai":
            _check_remote(entry, where)
        elif "tokenizer" in entry:
            raise UnknownModelError(
                f"{entry['name']} in {where}: tokenizer is for remote (openai) models; a local one uses its own."
            )
        for key in ("tasks", "languages", "best_for"):
            if key in entry:
                entry[key] = tuple(entry[key])
        specs.append(ModelSpec(**{"family": None, **entry}))
    return specs


def _check_remote(entry: dict, where: str) -> None:
    """A remote entry names an http(s) base URL and the server's model name, and is a chat model:
    every server of the protocol speaks chat completions. Its tokenizer, when named, is resolved
    at the first request (engine.backends.user_text): the registry is still being read here."""
    name = entry["name"]
    if not str(entry.get("location", "")).startswith(("http://", "https://")):
        raise UnknownModelError(f"{name} in {where}: location must be the server's base URL (http://host:port/v1).")
    if not entry.get("served_name"):
        raise UnknownModelError(f"{name} in {where}: served_name (the model name the server knows) is missing.")
    if entry.get("family", "causal") != "causal":
        raise UnknownModelError(f'{name} in {where}: remote models are chat (causal) models; set family = "causal".')
    entry["family"] = "causal"
    tokenizer = entry.get("tokenizer")
    if tokenizer is not None and (not isinstance(tokenizer, str) or not tokenizer.strip()):
        raise UnknownModelError(
            f"{name} in {where}: tokenizer must name a registered model or a tokenizer directory, not {tokenizer!r}."
        )


@functools.cache
def builtin_specs() -> tuple[ModelSpec, ...]:
    return tuple(_parse((files("engine") / "data" / "models.toml").read_text(), "engine/data/models.toml"))


def _user_specs() -> list[ModelSpec]:
    path = settings().models
    if path is None:
        return []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UnknownModelError(f"Cannot read the model file STUDIO_MODELS={path}: {exc}.") from exc
    return _parse(text, f"STUDIO_MODELS={path}")


def list_models(task: str | None = None) -> list[ModelSpec]:
    """Built-in and user specs (a user spec with a built-in name replaces it)."""
    by_name = {spec.name: spec for spec in (*builtin_specs(), *_user_specs())}
    return [s for s in by_name.values() if task is None or s.serves(task)]


def get_spec(name: str) -> ModelSpec:
    for spec in list_models():
        if spec.name == name:
            return spec
    for prefix, source in _PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return ModelSpec(name=name, source=source, location=name[len(prefix) :], family=None)
    known = ", ".join(s.name for s in list_models())
    raise UnknownModelError(
        f"Unknown model {name!r}. Known models: {known}; or use hub:ORG/NAME, local:/dir, "
        "gguf:/file.gguf, or register it in a STUDIO_MODELS file."
    )


def with_family(spec: ModelSpec, family: str, context_length: int) -> ModelSpec:
    return replace(spec, family=spec.family or family, context_length=spec.context_length or context_length)
