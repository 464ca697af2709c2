"""Context kinds: which kind of context a request carries, checked before anything runs.

A planner declares the kind of context it reads (`context_kind`). The factory knows no kind
itself: a distribution registers a kind's validator in the entry-point group
`planforge.contexts`, as planforge does for its own portfolio kind::

    [project.entry-points."planforge.contexts"]
    portfolio = "planforge.portfolio.context:validate_context"

A validator takes the context mapping, returns None when it can read it, and raises
`InvalidContext` naming the field at fault otherwise. The group is read from distribution
metadata without importing anything; a validator is imported the first time it is used and
kept. Two distributions declaring one kind: the first by (normalised distribution name, entry
name) wins, as among planner entry points; a kind registered in code beats both.

`decide_context_kind` is admission's rule: the kind of a request's context, validated;
`admit_context` applies it to a generation of planners.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from planforge.contract import ANY_CONTEXT, RESERVED_CONTEXT_KEYS, is_context_kind
from planforge.errors import (
    InvalidContext,
    PlannerDiscoveryError,
    PlannerError,
    PlannerSelectionError,
)
from planforge.factory._entrypoints import scan_entry_points
from planforge.factory._ranking import (
    SelectionRequest,
    kind_mismatch,
    objective_terms,
    planner_terms,
)
from planforge.factory._registry import Generation, RecordStatus
from planforge.logs import get_logger

__all__ = ["GROUP", "ContextKinds", "ContextValidator", "admit_context", "decide_context_kind"]

GROUP: Final = "planforge.contexts"
ContextValidator = Callable[[Mapping[str, Any]], None]
_ERROR_TEXT_LIMIT = 300
_log = get_logger("factory.contexts")


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a kind's validator lives: `module:function` and the distribution declaring it."""

    target: str
    origin: str


class ContextKinds:
    """The registered context kinds and their validators; thread-safe, scanned lazily."""

    def __init__(self, search_path: Sequence[str] | None = None) -> None:
        self._search_path = tuple(search_path) if search_path is not None else None
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] | None = None
        self._problems: tuple[str, ...] = ()
        self._loaded: dict[str, ContextValidator] = {}
        self._broken: dict[str, PlannerDiscoveryError] = {}  # not imported again until refresh
        self._code: dict[str, ContextValidator] = {}

    # -- registry ---------------------------------------------------------------------------

    def register(self, kind: str, validator: ContextValidator) -> None:
        """Register a kind's validator from code; it wins over an entry point of that kind."""
        _check_kind_name(kind)
        if not callable(validator):
            raise PlannerError(
                f"the validator of context kind {kind!r} must be callable, got "
                f"{type(validator).__name__}.",
                where="contexts",
            )
        with self._lock:
            self._code[kind] = validator

    def refresh(self) -> None:
        """Read the entry points again on next use (after installing a distribution)."""
        with self._lock:
            self._sources = None
            self._loaded = {}
            self._broken = {}

    def names(self) -> tuple[str, ...]:
        """Every kind with a validator, sorted."""
        return tuple(sorted({*self._scanned(), *self._code}))

    def problems(self) -> tuple[str, ...]:
        """Entry points of the group that could not be used, and why."""
        self._scanned()
        return self._problems

    def target(self, kind: str) -> str | None:
        """Where `kind`'s validator lives (`module:function`, or `code`), without importing."""
        if kind in self._code:
            return "code"
        source = self._scanned().get(kind)
        return None if source is None else source.target

    def validator(self, kind: str) -> ContextValidator | None:
        """`kind`'s validator (imported on first use), or None when none is registered."""
        found = self._code.get(kind) or self._loaded.get(kind)
        if found is not None:
            return found
        source = self._scanned().get(kind)
        if source is None:
            return None
        broken = self._broken.get(kind)
        if broken is not None:
            raise broken
        for entry in reversed(self._search_path or ()):  # as the factory imports planners
            if entry not in sys.path:
                sys.path.append(entry)
        try:
            loaded = _load(kind, source)
        except PlannerDiscoveryError as exc:
            _log.warning("context validator cannot be loaded", kind=kind, error=exc.message)
            with self._lock:
                self._broken[kind] = exc
            raise
        with self._lock:
            self._loaded.setdefault(kind, loaded)
        return loaded

    def validate(self, kind: str, context: Mapping[str, Any]) -> bool:
        """Check `context` as `kind`: False when no validator is registered for it.

        Raises `InvalidContext` for a context the validator rejects, and `PlannerError` when
        the validator itself fails (a defect of the validator, never blamed on the caller).
        """
        validator = self.validator(kind)
        if validator is None:
            return False
        try:
            validator(context)
        except InvalidContext as exc:
            if exc.kind is None:
                exc.kind = kind
                exc.context["kind"] = kind
            raise
        except Exception as exc:
            raise PlannerError(
                f"The validator of context kind {kind!r} ({self.target(kind)}) failed: "
                f"{type(exc).__name__}: {str(exc)[:_ERROR_TEXT_LIMIT]}. A validator must "
                "raise InvalidContext for a context it rejects; fix the validator.",
                where="contexts",
                context={"kind": kind},
            ) from exc
        return True

    # -- entry points -----------------------------------------------------------------------

    def _scanned(self) -> dict[str, _Source]:
        sources = self._sources
        if sources is not None:
            return sources
        with self._lock:
            if self._sources is None:
                self._sources, self._problems = self._scan()
            return self._sources

    def _scan(self) -> tuple[dict[str, _Source], tuple[str, ...]]:
        search_path = self._search_path if self._search_path is not None else tuple(sys.path)
        scan = scan_entry_points(GROUP, search_path)
        problems = [f"{p.file}:{p.line}: {p.reason}" for p in scan.problems]
        entries = sorted(
            (entry for dist in scan.dists for entry in dist.entries),
            key=lambda entry: (entry.dist, entry.name),
        )
        sources: dict[str, _Source] = {}
        for entry in entries:
            where = f"{entry.dist}: {entry.name} = {entry.value}"
            if entry.name == ANY_CONTEXT or not is_context_kind(entry.name):
                problems.append(
                    f"{where}: {entry.name!r} cannot name a context kind (an identifier other "
                    f"than {ANY_CONTEXT!r})"
                )
            elif not entry.attr:
                problems.append(f"{where}: name the validator as module:function")
            elif entry.name in sources:
                problems.append(
                    f"{where}: kind {entry.name!r} is already registered by "
                    f"{sources[entry.name].origin}"
                )
            else:
                sources[entry.name] = _Source(f"{entry.module}:{entry.attr}", entry.dist)
        return sources, tuple(problems)


def _check_kind_name(kind: object) -> None:
    if kind == ANY_CONTEXT or not is_context_kind(kind):
        raise PlannerError(
            f"{kind!r} cannot name a context kind: use an identifier such as 'portfolio' "
            f"(and not {ANY_CONTEXT!r}, which means any mapping).",
            where="contexts",
        )


def _load(kind: str, source: _Source) -> ContextValidator:
    module_name, _, qualname = source.target.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception as exc:
        raise PlannerDiscoveryError(
            f"The validator of context kind {kind!r} ({source.target}, from {source.origin}) "
            f"cannot be loaded: {type(exc).__name__}: {str(exc)[:_ERROR_TEXT_LIMIT]}. Fix or "
            "uninstall that distribution.",
            where="contexts",
            context={"kind": kind, "target": source.target},
        ) from exc
    if not callable(target):
        raise PlannerDiscoveryError(
            f"The validator of context kind {kind!r} ({source.target}, from {source.origin}) "
            "is not callable; point the entry point at a function.",
            where="contexts",
            context={"kind": kind, "target": source.target},
        )
    validator: ContextValidator = target
    return validator


# -- admission --------------------------------------------------------------------------------


def admit_context(
    generation: Generation,
    kinds: ContextKinds,
    request: SelectionRequest,
    context: Mapping[str, Any],
    *,
    planner: str | None = None,
) -> str | None:
    """The kind of `context` for this request over `generation`, validated.

    None when `planner` names no usable planner: the run then reports that itself. The
    planner the caller meant, when the context alone cannot tell, is the selectable planner
    whose terms share most with the objective, ties (and no shared term at all) going to the
    selection order ignoring kinds: the objective's words say what the caller is after better
    than the bonuses of the ranking do (a gold portfolio planner outranks a beta risk
    reviewer for "review the riskiest modules", but the caller meant the reviewer).
    """
    planner_kind = None
    if planner is not None:
        record = generation.records.get(planner)
        if record is None or record.status is RecordStatus.NOT_ALLOWED:
            return None
        planner_kind = record.spec.context_kind

    def intended_kind() -> str | None:
        unkinded = dataclasses.replace(request, context_kind=None)
        ranked = generation.index.top(unkinded, len(generation.records))
        if not ranked:
            return None
        wanted = objective_terms(request.objective)
        records = generation.records
        name, _ = max(ranked, key=lambda item: len(wanted & planner_terms(records[item[0]].spec)))
        return records[name].spec.context_kind

    return decide_context_kind(
        kinds,
        context,
        declared=generation.context_kinds,
        planner_kind=planner_kind,
        context_kind=request.context_kind,
        intended_kind=intended_kind,
    )


def decide_context_kind(
    kinds: ContextKinds,
    context: Mapping[str, Any],
    *,
    declared: Sequence[str],
    planner_kind: str | None = None,
    context_kind: str | None = None,
    intended_kind: Callable[[], str | None] = lambda: None,
) -> str:
    """The kind of `context`, validated; raises `InvalidContext` for a context that is bad.

    `declared` lists (sorted) the kinds the active planners declare; `planner_kind` is the
    kind of the planner the caller named; `intended_kind` gives the kind of the planner the
    caller most likely meant (see `admit_context`). In order:

    - an explicit `context_kind` is validated as that kind ("any": no particular kind);
    - a named planner's context is validated as the planner's kind;
    - otherwise each declared kind with a validator is tried, in sorted order. One accepts:
      that is the kind. Several accept (an empty context may be a valid portfolio and a valid
      something else): the intended planner's kind when it is among them, else the first. None
      accepts: when the intended planner's kind rejected it, that rejection is raised (the
      caller meant that planner and sent a bad context); else the context is of no known
      kind, "any", and only planners reading any mapping can take it.

    The reserved keys of the run protocol (`planner_config`) are never validated.
    """
    if not isinstance(context, Mapping):
        raise InvalidContext("context", f"expected an object, got {type(context).__name__}")
    body = _without_reserved(context)
    if context_kind is not None:
        return _explicit(kinds, body, context_kind, declared, planner_kind)
    if planner_kind is not None:
        if planner_kind != ANY_CONTEXT:
            kinds.validate(planner_kind, body)
        return planner_kind
    accepted: list[str] = []
    rejected: dict[str, InvalidContext] = {}
    for kind in declared:
        if kind == ANY_CONTEXT or kinds.target(kind) is None:
            continue
        try:
            kinds.validate(kind, body)
        except InvalidContext as exc:
            rejected[kind] = exc
            continue
        except PlannerError as exc:  # a broken validator: this kind cannot be told
            _log.warning("context validator failed", kind=kind, error=exc.message)
            continue
        accepted.append(kind)
    if len(accepted) == 1:
        return accepted[0]
    if not accepted and not rejected:
        return ANY_CONTEXT  # no kind could be told: nothing to ask selection about
    intended = intended_kind()
    if accepted:
        return intended if intended in accepted else accepted[0]
    if intended is not None and intended in rejected:
        raise rejected[intended]
    return ANY_CONTEXT


def _explicit(
    kinds: ContextKinds,
    body: Mapping[str, Any],
    context_kind: str,
    declared: Sequence[str],
    planner_kind: str | None,
) -> str:
    if not is_context_kind(context_kind):
        raise PlannerSelectionError(
            f"context_kind must be a context kind such as 'portfolio' (an identifier), got "
            f"{context_kind!r}.",
            where="contexts",
        )
    if planner_kind is not None:
        mismatch = kind_mismatch(planner_kind, context_kind)
        if mismatch is not None:
            raise PlannerSelectionError(
                f"The planner asked for {mismatch}; drop context_kind or name another planner.",
                where="contexts",
                context={"context_kind": context_kind},
            )
    if context_kind == ANY_CONTEXT:
        return context_kind
    if not kinds.validate(context_kind, body) and context_kind not in declared:
        known = ", ".join(sorted({ANY_CONTEXT, *kinds.names(), *declared}))
        raise PlannerSelectionError(
            f"Unknown context kind {context_kind!r}: no validator is registered for it and no "
            f"planner reads it. Known kinds: {known}.",
            where="contexts",
            context={"context_kind": context_kind},
        )
    return context_kind


def _without_reserved(context: Mapping[str, Any]) -> Mapping[str, Any]:
    if not any(key in context for key in RESERVED_CONTEXT_KEYS):
        return context
    return {key: value for key, value in context.items() if key not in RESERVED_CONTEXT_KEYS}
