"""Who runs a request: the local engine or a server over the OpenAI protocol, behind one interface."""

from engine.backends.base import Backend, Prompt
from engine.backends.local import LocalBackend
from engine.backends.remote import RemoteBackend
from engine.models.registry import get_spec
from engine.runtime.engine import Engine


def backend_for(model: str, engine: Engine) -> Backend:
    """The one place that asks where a model runs."""
    spec = get_spec(model)
    return RemoteBackend(spec, engine) if spec.remote else LocalBackend(spec, engine)


__all__ = ["Backend", "LocalBackend", "Prompt", "RemoteBackend", "backend_for"]
