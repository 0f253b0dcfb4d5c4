"""Who runs a request: the local engine or a server over the OpenAI protocol, behind one interface."""

from engine.backends.base import Admission, Backend, Prompt, Run
from engine.backends.local import LocalBackend
from engine.backends.remote import RemoteBackend
from engine.models.registry import get_spec
from engine.runtime.engine import Engine


def backend_for(model: str, engine: Engine) -> Backend:
    """The one place that asks where a model runs."""
    return RemoteBackend(engine) if get_spec(model).remote else LocalBackend(engine)


__all__ = ["Admission", "Backend", "LocalBackend", "Prompt", "RemoteBackend", "Run", "backend_for"]
