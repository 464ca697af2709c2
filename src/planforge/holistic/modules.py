"""The four module kinds of the holistic engine and what every module declares.

A module's metadata (name, version, author, description, tags, dependencies) lives in plain
literal class attributes, like a planner's, so the registry reads it from the source without
importing the module. Its parameters are a pydantic model (`Params`, every field with a
default), which gives validation that names the bad key and the configuration's JSON Schema.

Every stage method receives the parsed domain context first, so no module has to guess what
it is called with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "KINDS",
    "MODULE_DIRS_ENV",
    "Action",
    "ActionSequence",
    "Filter",
    "HolisticModule",
    "ModuleKind",
    "ModuleMetadata",
    "NoParams",
    "OpportunityCalculator",
    "PatternGenerator",
    "SequenceGenerator",
]

ModuleKind = Literal[
    "opportunity_calculators", "pattern_generators", "sequence_generators", "filters"
]
#: The configuration groups, in pipeline order.
KINDS: tuple[ModuleKind, ...] = (
    "opportunity_calculators",
    "pattern_generators",
    "sequence_generators",
    "filters",
)

#: The environment variable naming directories of module plugins (os.pathsep separated).
MODULE_DIRS_ENV: Final = "PLANFORGE_MODULE_DIRS"

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True)
class Action:
    """One candidate step. The engine treats it as opaque data; the domain gives it meaning.

    `side` is what the step does (`sell`, `buy`, ...), `key` what it acts on (a symbol),
    `value` its size in the domain's base unit (a currency), `priority` how much a module
    wants it (higher first) and `category` which calculator proposed it.
    """

    side: str
    key: str
    quantity: float
    price: float
    value: float
    priority: float
    category: str
    reason: str = ""
    currency: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()

    def identity(self) -> tuple[str, str]:
        """Two actions with the same side and key are the same step for sequence building."""
        return (self.side, self.key)


#: An ordered candidate plan: the steps in the order they would execute.
ActionSequence = tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class ModuleMetadata:
    name: str
    kind: str
    version: str
    author: str
    description: str
    tags: tuple[str, ...]
    dependencies: tuple[str, ...]
    target: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "author": self.author,
            "description": self.description,
            "tags": list(self.tags),
            "dependencies": list(self.dependencies),
            "target": self.target,
            "source": self.source,
        }

    @staticmethod
    def valid_version(version: str) -> bool:
        return bool(_SEMVER.match(version))


class NoParams(BaseModel):
    """Parameters of a module that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HolisticModule:
    """Base of every module; subclasses set the literal metadata and a `Params` model."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1.0.0"
    author: ClassVar[str] = ""
    description: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()
    #: Other modules this one needs enabled, as `kind.name` or a bare `name`.
    dependencies: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[BaseModel]] = NoParams

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return cls.Params().model_dump()

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any] | None) -> BaseModel:
        """Validated parameters; raises pydantic's ValidationError naming the bad key."""
        return cls.Params.model_validate(dict(raw or {}))

    @classmethod
    def metadata(cls) -> ModuleMetadata:
        return ModuleMetadata(
            name=cls.name,
            kind=cls.kind,
            version=cls.version,
            author=cls.author,
            description=cls.description,
            tags=tuple(cls.tags),
            dependencies=tuple(cls.dependencies),
            target=f"{cls.__module__}:{cls.__qualname__}",
            source="class",
        )


class OpportunityCalculator(HolisticModule):
    """Looks at the context and proposes candidate actions of one category."""

    kind: ClassVar[str] = "opportunity_calculators"

    def calculate(self, context: Any, params: Any) -> list[Action]:
        raise NotImplementedError


class PatternGenerator(HolisticModule):
    """Turns candidates grouped by category into whole sequences following one idea."""

    kind: ClassVar[str] = "pattern_generators"

    def generate(
        self, context: Any, candidates: Mapping[str, Sequence[Action]], params: Any
    ) -> list[ActionSequence]:
        raise NotImplementedError


class SequenceGenerator(HolisticModule):
    """Builds sequences from the flat, priority-sorted candidate list."""

    kind: ClassVar[str] = "sequence_generators"

    def generate(
        self, context: Any, candidates: Sequence[Action], params: Any
    ) -> list[ActionSequence]:
        raise NotImplementedError


class Filter(HolisticModule):
    """Drops (never adds) sequences that break a rule."""

    kind: ClassVar[str] = "filters"

    def apply(
        self, context: Any, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        raise NotImplementedError
