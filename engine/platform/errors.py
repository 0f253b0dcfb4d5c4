"""Typed errors: every message says what went wrong and what the user can do about it."""


class StudioError(Exception):
    """Base class for errors a user can act on (shown as-is by the CLI and the UI)."""


class UnknownModelError(StudioError):
    pass


class ModelLoadError(StudioError):
    pass


class PrecisionError(StudioError):
    pass


class InputError(StudioError):
    pass


class ContextLengthError(InputError):
    pass


class AttentionConfigError(StudioError):
    pass


class EngineStoppedError(StudioError):
    pass


class RemoteError(StudioError):
    pass


class TimeLimitError(StudioError):
    """Work that cannot return a partial answer (scoring labels) ran past the operator's time limit."""


class OutOfMemoryError(StudioError):
    """The device ran out of memory loading a model or running a request; the cache freed what it could."""
