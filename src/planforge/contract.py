"""The contract between planforge and a planner: `Planner`, `PlannerSpec`, `Plan`, `PlanStep`.

A planner's metadata lives in plain literal class attributes so discovery can read it from
the source with `ast`, without running the plugin. Among them, `context_kind` names the kind
of context the planner reads (`"portfolio"`, ...); `"any"` (the default) means it reads any
mapping and checks it itself. Kinds are plugins too (see `planforge.factory._contexts`).

The run protocol: a planner that wants to report progress, read the configuration the
request chose, or stop at the run's deadline declares `accepts_run = True` (a literal class
attribute) and takes one more keyword, `run`:

    class MyPlanner(Planner):
        name = "mine"
        accepts_run = True

        def plan(self, objective, context, *, run: Run | None = None) -> Plan:
            for step, item in enumerate(work):
                if run is not None:
                    run.check()                      # raises RunStopped past the deadline
                    run.progress(step, len(work), f"step {step}")
            ...

The runtime passes a `Run` (`planforge._run`) only to planners that declare it, and never
looks at signatures. `run` is None when the planner is called directly. A user may still
name a configuration in a context under `CONFIG_CONTEXT_KEY`; the runtime hands it to a
run-aware planner as `run.config` (a bucket's configuration always wins). In the same way a
context may ask `EXPLAIN_CONTEXT_KEY: true` (what the service stores for `POST /plans` with
`explain`): the runtime lifts it into `run.explain`, and a planner that can explain attaches
`Plan.explanation`, plain JSON data saying why this plan.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from planforge._run import (
    RUN_MODULE_COMPLETED,
    RUN_MODULE_FAILED,
    RUN_MODULE_STARTED,
    RUN_PROGRESS,
    Run,
    RunEvent,
    RunEventSink,
)
from planforge.errors import InvalidPlannerMetadata, RunStopped

__all__ = [
    "ANY_CONTEXT",
    "CONFIG_CONTEXT_KEY",
    "EXPLAIN_CONTEXT_KEY",
    "METADATA_ATTRIBUTES",
    "RESERVED_CONTEXT_KEYS",
    "RUN_MODULE_COMPLETED",
    "RUN_MODULE_FAILED",
    "RUN_MODULE_STARTED",
    "RUN_PROGRESS",
    "TIERS",
    "Plan",
    "PlanStep",
    "Planner",
    "PlannerRef",
    "PlannerSpec",
    "Run",
    "RunAwarePlanner",
    "RunEvent",
    "RunEventSink",
    "RunStopped",
    "Tier",
    "accepts_run",
    "is_context_kind",
    "plan_with",
    "spec_from_attributes",
]

Tier = Literal["alpha", "beta", "stable", "gold", "vip"]
TIERS: tuple[str, ...] = ("alpha", "beta", "stable", "gold", "vip")

#: The context kind of a planner that reads any mapping (and checks it itself).
ANY_CONTEXT = "any"
#: The context key under which a user may name the configuration to plan with (a preset, a
#: path or TOML text); the runtime hands it to a run-aware planner as `Run.config`.
CONFIG_CONTEXT_KEY = "planner_config"
#: The context key under which a request asks the planner to explain its plan (`true`); the
#: runtime hands it to a run-aware planner as `Run.explain`, and drops it for any other.
EXPLAIN_CONTEXT_KEY = "planner_explain"
#: Context keys that are never part of the input a context kind's validator checks.
RESERVED_CONTEXT_KEYS: tuple[str, ...] = (CONFIG_CONTEXT_KEY, EXPLAIN_CONTEXT_KEY)

#: Class attributes that make up a planner's metadata, with their defaults.
METADATA_ATTRIBUTES: dict[str, Any] = {
    "name": "",
    "version": "0.0.0",
    "capabilities": (),
    "tags": (),
    "tier": "beta",
    "production_ready": False,
    "reliability_score": None,
    "description": "",
    "keywords": (),
    "stateful": False,
    "context_kind": ANY_CONTEXT,
}


def is_context_kind(value: object) -> bool:
    """Whether `value` can name a context kind: a non-empty ASCII identifier."""
    return type(value) is str and value.isascii() and value.isidentifier()


class PlanStep(BaseModel):
    """One action of a plan; `depends_on` names the ids of steps that must come first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    action: str = Field(min_length=1)
    description: str = ""
    params: dict[str, JsonValue] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class PlannerRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = "0.0.0"


def _plan_digest(objective: str, planner: PlannerRef, steps: Sequence[PlanStep]) -> str:
    body = json.dumps(
        {
            "objective": objective,
            "planner": planner.model_dump(),
            "steps": [step.model_dump(mode="json") for step in steps],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def _is_none(value: object) -> bool:
    return value is None


class Plan(BaseModel):
    """A planner's answer. Serialises to JSON and back without loss.

    `plan_id` defaults to a digest of the objective, the planner and the steps, so the same
    inputs give the same plan id in every process. `explanation` is what a planner asked to
    explain (`Run.explain`) says about why this plan, as JSON data of its own shape; it is
    absent from the serialised plan when None, so a plan nobody asked about reads as before.
    """

    model_config = ConfigDict(extra="forbid")

    plan_id: str = ""
    objective: str
    planner: PlannerRef
    steps: list[PlanStep] = Field(default_factory=list)
    score: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    explanation: dict[str, JsonValue] | None = Field(default=None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if not self.plan_id:
            self.plan_id = _plan_digest(self.objective, self.planner, self.steps)
        ids = [step.id for step in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError("step ids must be unique within a plan")
        known = set(ids)
        for step in self.steps:
            missing = [dep for dep in step.depends_on if dep not in known]
            if missing:
                raise ValueError(f"step {step.id!r} depends on unknown steps {missing}")
        for key, value in self.metrics.items():
            if not math.isfinite(value):
                raise ValueError(f"metric {key!r} must be finite, got {value}")
        return self


class PlannerSpec(NamedTuple):
    """What discovery knows about a planner without importing it.

    `target` is `module:qualname`; `source` is how it was found (`entry_point`, `directory`,
    `code`), `origin` the distribution, directory or `code`, `path` its source file and
    `fingerprint` that file's size and mtime when it was read. A named tuple, because
    discovery rebuilds hundreds of these from its cache on every warm start.
    """

    name: str
    version: str
    capabilities: tuple[str, ...]
    tags: tuple[str, ...]
    tier: str
    production_ready: bool
    reliability_score: float | None
    description: str
    keywords: tuple[str, ...]
    stateful: bool
    target: str
    source: str
    origin: str = ""
    path: str | None = None
    fingerprint: str = ""
    metadata_from: str = "ast"
    context_kind: str = ANY_CONTEXT

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def qualname(self) -> str:
        return self.target.partition(":")[2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "capabilities": list(self.capabilities),
            "tags": list(self.tags),
            "tier": self.tier,
            "production_ready": self.production_ready,
            "reliability_score": self.reliability_score,
            "description": self.description,
            "keywords": list(self.keywords),
            "stateful": self.stateful,
            "target": self.target,
            "source": self.source,
            "origin": self.origin,
            "path": self.path,
            "fingerprint": self.fingerprint,
            "metadata_from": self.metadata_from,
            "context_kind": self.context_kind,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannerSpec:
        return cls(
            name=data["name"],
            version=data["version"],
            capabilities=tuple(data["capabilities"]),
            tags=tuple(data["tags"]),
            tier=data["tier"],
            production_ready=data["production_ready"],
            reliability_score=data["reliability_score"],
            description=data["description"],
            keywords=tuple(data["keywords"]),
            stateful=data["stateful"],
            target=data["target"],
            source=data["source"],
            origin=data.get("origin", ""),
            path=data.get("path"),
            fingerprint=data.get("fingerprint", ""),
            metadata_from=data.get("metadata_from", "ast"),
            context_kind=data.get("context_kind", ANY_CONTEXT),
        )


def _string_tuple(target: str, attribute: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise InvalidPlannerMetadata(
            target, attribute, f"expected a tuple of strings, got {type(value).__name__}"
        )
    items = list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidPlannerMetadata(
                target, attribute, f"every item must be a non-empty string, got {item!r}"
            )
    return tuple(sorted(set(items)))


def _string(target: str, attribute: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidPlannerMetadata(
            target, attribute, f"expected a string, got {type(value).__name__}"
        )
    return value


def _boolean(target: str, attribute: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidPlannerMetadata(target, attribute, f"expected True or False, got {value!r}")
    return value


_TIER_SET = frozenset(TIERS)
_NAME_BREAKERS = frozenset(" \t\n\r\v\f,")


def _plain_strings(value: Any) -> tuple[str, ...] | None:
    if type(value) is not tuple:
        return None
    for item in value:
        if type(item) is not str or not item:
            return None
    if len(value) == 2:  # the usual size: order two items without building a set
        first, second = value
        return value if first < second else (second, first) if second < first else (first,)
    return value if len(value) < 2 else tuple(sorted(set(value)))


# Long on purpose: one flat pass over the attributes is discovery's cold-start hot path, and
# each helper it were split into would cost a call per spec.
def _spec_if_plain(
    attributes: Mapping[str, Any],
    target: str,
    source: str,
    origin: str,
    path: str | None,
    fingerprint: str,
    metadata_from: str,
    default_name: str,
) -> PlannerSpec | None:
    """The common, valid case without building error messages; None sends it to the checks.

    Discovery validates hundreds of specs on a cold start, so this path avoids every
    per-attribute call of the general one.
    """
    get = attributes.get
    declared = get("name", "")
    if type(declared) is not str:
        return None
    name = declared or default_name
    version = get("version", "0.0.0")
    tier = get("tier", "beta")
    description = get("description", "")
    production_ready = get("production_ready", False)
    stateful = get("stateful", False)
    context_kind = get("context_kind", ANY_CONTEXT)
    reliability = get("reliability_score")
    if (
        type(name) is not str
        or not name
        or not name.isascii()
        or not _NAME_BREAKERS.isdisjoint(name)
        or type(version) is not str
        or type(tier) is not str
        or tier not in _TIER_SET
        or type(description) is not str
        or type(production_ready) is not bool
        or type(stateful) is not bool
        or not is_context_kind(context_kind)
    ):
        return None
    if reliability is not None and (
        type(reliability) is not float or not 0.0 <= reliability <= 1.0
    ):
        return None
    capabilities = _plain_strings(get("capabilities", ()))
    tags = _plain_strings(get("tags", ()))
    keywords = _plain_strings(get("keywords", ()))
    if capabilities is None or tags is None or keywords is None:
        return None
    return PlannerSpec(
        name,
        version,
        capabilities,
        tags,
        tier,
        production_ready,
        reliability,
        description,
        keywords,
        stateful,
        target,
        source,
        origin,
        path,
        fingerprint,
        metadata_from,
        context_kind,
    )


def spec_from_attributes(
    attributes: Mapping[str, Any],
    *,
    target: str,
    source: str,
    origin: str = "",
    path: str | None = None,
    fingerprint: str = "",
    metadata_from: str = "ast",
    default_name: str = "",
) -> PlannerSpec:
    """Validate raw metadata attributes (missing ones take their defaults) into a spec.

    Every reader (the `ast` reader, the sandbox, code registration) goes through here, so a
    planner's metadata means the same thing however it was found. Raises
    `InvalidPlannerMetadata` naming the attribute at fault.
    """
    fast = _spec_if_plain(
        attributes, target, source, origin, path, fingerprint, metadata_from, default_name
    )
    if fast is not None:
        return fast
    return _spec_checked(
        attributes,
        target=target,
        source=source,
        origin=origin,
        path=path,
        fingerprint=fingerprint,
        metadata_from=metadata_from,
        default_name=default_name,
    )


def _spec_checked(
    attributes: Mapping[str, Any],
    *,
    target: str,
    source: str,
    origin: str,
    path: str | None,
    fingerprint: str,
    metadata_from: str,
    default_name: str,
) -> PlannerSpec:
    values = {key: attributes.get(key, default) for key, default in METADATA_ATTRIBUTES.items()}
    name = _string(target, "name", values["name"]) or default_name
    if not name:
        raise InvalidPlannerMetadata(target, "name", "a planner must declare a non-empty name")
    if any(ch.isspace() for ch in name) or "," in name:
        raise InvalidPlannerMetadata(target, "name", f"{name!r} must not contain spaces or commas")
    tier = _string(target, "tier", values["tier"])
    if tier not in TIERS:
        raise InvalidPlannerMetadata(target, "tier", f"{tier!r} is not one of {', '.join(TIERS)}")
    reliability = values["reliability_score"]
    if reliability is not None:
        if isinstance(reliability, bool) or not isinstance(reliability, int | float):
            raise InvalidPlannerMetadata(
                target, "reliability_score", f"expected a number in [0, 1], got {reliability!r}"
            )
        reliability = float(reliability)
        if not 0.0 <= reliability <= 1.0:
            raise InvalidPlannerMetadata(
                target, "reliability_score", f"{reliability} is outside [0, 1]"
            )
    context_kind = _string(target, "context_kind", values["context_kind"])
    if not is_context_kind(context_kind):
        raise InvalidPlannerMetadata(
            target,
            "context_kind",
            f"{context_kind!r} is not a context kind; write an identifier such as "
            f"'portfolio', or {ANY_CONTEXT!r} for a planner that reads any mapping",
        )
    return PlannerSpec(
        name=name,
        version=_string(target, "version", values["version"]),
        capabilities=_string_tuple(target, "capabilities", values["capabilities"]),
        tags=_string_tuple(target, "tags", values["tags"]),
        tier=tier,
        production_ready=_boolean(target, "production_ready", values["production_ready"]),
        reliability_score=reliability,
        description=_string(target, "description", values["description"]),
        keywords=_string_tuple(target, "keywords", values["keywords"]),
        stateful=_boolean(target, "stateful", values["stateful"]),
        target=target,
        source=source,
        origin=origin,
        path=path,
        fingerprint=fingerprint,
        metadata_from=metadata_from,
        context_kind=context_kind,
    )


class Planner:
    """Base class of every planner.

    Subclasses declare their metadata as plain literal class attributes (strings, numbers,
    booleans, tuples of strings) and implement `plan`. A stateful planner gets one instance
    per user; a stateless one is shared. `context_kind` names the kind of context `plan`
    reads: selection never picks a planner for a context of another kind, and the context is
    validated as that kind before `plan` runs.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.0.0"
    capabilities: ClassVar[tuple[str, ...]] = ()
    tags: ClassVar[tuple[str, ...]] = ()
    tier: ClassVar[str] = "beta"
    production_ready: ClassVar[bool] = False
    reliability_score: ClassVar[float | None] = None
    description: ClassVar[str] = ""
    keywords: ClassVar[tuple[str, ...]] = ()
    stateful: ClassVar[bool] = False
    context_kind: ClassVar[str] = ANY_CONTEXT
    #: True: `plan` takes the keyword `run` (the run protocol, see the module docstring).
    accepts_run: ClassVar[bool] = False

    def plan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        raise NotImplementedError(f"{type(self).__qualname__} must implement plan()")

    async def aplan(self, objective: str, context: Mapping[str, Any]) -> Plan:
        """Run `plan` off the event loop."""
        return await asyncio.to_thread(self.plan, objective, context)

    def self_test(self) -> None:
        """Raise if the planner cannot work here; run in the sandbox before first use."""

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        """The class's metadata attributes as declared (inherited ones included)."""
        return {key: getattr(cls, key) for key in METADATA_ATTRIBUTES}

    @classmethod
    def spec(cls, *, source: str = "code", origin: str = "code") -> PlannerSpec:
        return spec_from_attributes(
            cls.metadata(),
            target=f"{cls.__module__}:{cls.__qualname__}",
            source=source,
            origin=origin,
            metadata_from="class",
        )

    def new_plan(
        self,
        objective: str,
        steps: Sequence[PlanStep] = (),
        *,
        score: float | None = None,
        metrics: Mapping[str, float] | None = None,
        warnings: Sequence[str] = (),
    ) -> Plan:
        """Build a `Plan` signed with this planner's name and version."""
        return Plan(
            objective=objective,
            planner=PlannerRef(name=self.name, version=self.version),
            steps=list(steps),
            score=score,
            metrics=dict(metrics or {}),
            warnings=list(warnings),
        )


class RunAwarePlanner(Protocol):
    """The face of a planner that declared `accepts_run = True`."""

    def plan(
        self, objective: str, context: Mapping[str, Any], *, run: Run | None = None
    ) -> Plan: ...


def accepts_run(planner: object) -> bool:
    """Whether `planner` (an instance or a class) declared the run protocol, literally."""
    cls = planner if isinstance(planner, type) else type(planner)
    return getattr(cls, "accepts_run", False) is True


def plan_with(
    planner: Planner, objective: str, context: Mapping[str, Any], run: Run | None
) -> Plan:
    """Call `planner.plan`, handing it `run` only if it declared the run protocol.

    The one place a runner decides how to call a planner: the runtime, `run_plan` and any
    other caller pass their run here and never look at the planner's signature.
    """
    if run is not None and accepts_run(planner):
        return cast(RunAwarePlanner, planner).plan(objective, context, run=run)
    return planner.plan(objective, context)
