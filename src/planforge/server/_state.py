"""What every request handler shares: built once per app in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planforge.configstore import ConfigStore
from planforge.factory import PlannerFactory
from planforge.runtime import EventBus, ExecutionEngineFactory
from planforge.server._streams import OpenStreams
from planforge.server._tokens import TokenCache

__all__ = ["ServiceState"]


@dataclass(slots=True)
class ServiceState:
    """The service's collaborators; `runs` starts, recovers and cancels runs (a
    `RunService`; the runs themselves live in the store), `tokens`
    this process's cache of token lookups over `store`, and `streams` its open event
    streams, watched for revoked tokens."""

    factory: PlannerFactory
    store: ConfigStore
    bus: EventBus
    engines: ExecutionEngineFactory
    runs: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    tokens: TokenCache = field(init=False)
    streams: OpenStreams = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenCache(self.store)
        self.streams = OpenStreams(self.tokens)
