"""One error hierarchy for every layer.

Each error carries the facts a caller needs to act (which planner, which module, which limit)
as attributes, and its message says what happened and what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planforge.redact import is_secret_key, redact_text

__all__ = [
    "SANDBOX_PHASES",
    "CircuitOpenError",
    "DocumentError",
    "DocumentTooDeep",
    "InvalidContext",
    "InvalidPlannerMetadata",
    "NoActivePlannersError",
    "NonFiniteNumber",
    "PlanExecutionError",
    "PlannerDiscoveryError",
    "PlannerError",
    "PlannerInstantiationError",
    "PlannerNotAllowed",
    "PlannerNotFound",
    "PlannerQuarantined",
    "PlannerSelectionError",
    "RunStopped",
    "SandboxError",
    "SandboxImportError",
    "SandboxTimeout",
    "SettingsError",
    "shown_value",
]


def shown_value(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, so a huge bad input cannot flood a message."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PlannerError(Exception):
    """Root of every planforge error.

    `where` names the operation that failed and `context` holds extra facts for logs and
    diagnostics; both are optional.
    """

    def __init__(
        self, message: str, *, where: str | None = None, context: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.context: dict[str, Any] = dict(context or {})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for diagnostics and HTTP error bodies."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "where": self.where,
            "context": self.context,
        }


class SettingsError(PlannerError):
    """An environment variable holds a value planforge cannot use."""

    def __init__(self, variable: str, value: object, problem: str) -> None:
        if is_secret_key(variable) and value is not None:
            value = "<hidden>"  # a URL or token variable: its value may carry a password
            shown = value
        else:
            shown = "<unset>" if value is None else repr(value)
        super().__init__(
            f"{variable}={shown} is not valid: {redact_text(problem)}. Fix or unset {variable}.",
            where="settings",
            context={"variable": variable, "value": value},
        )
        self.variable = variable
        self.value = value
        self.problem = problem


class PlannerNotFound(PlannerError):
    def __init__(self, planner_name: str, known: tuple[str, ...] = ()) -> None:
        hint = (
            f"Known planners: {', '.join(known)}."
            if known
            else "No planner is registered; check FACTORY_PLUGIN_DIRS and installed plugins."
        )
        super().__init__(
            f"No planner named {planner_name!r}. {hint}",
            where="registry",
            context={"planner_name": planner_name},
        )
        self.planner_name = planner_name
        self.known = known


class PlannerNotAllowed(PlannerError):
    """The planner exists but ALLOWED_PLANNERS or FACTORY_EXCLUDE_PLANNERS leaves it out."""

    def __init__(self, planner_name: str, variable: str) -> None:
        super().__init__(
            f"Planner {planner_name!r} is left out by {variable}. Change {variable} to use it.",
            where="registry",
            context={"planner_name": planner_name, "variable": variable},
        )
        self.planner_name = planner_name
        self.variable = variable


class PlannerQuarantined(PlannerError):
    def __init__(self, planner_name: str, reason: str, since: float | None = None) -> None:
        super().__init__(
            f"Planner {planner_name!r} is quarantined: {reason}. It is checked again when its "
            f"source file changes, or run `planforge quarantine release {planner_name}`.",
            where="quarantine",
            context={"planner_name": planner_name, "reason": reason, "since": since},
        )
        self.planner_name = planner_name
        self.reason = reason
        self.since = since


class SandboxError(PlannerError):
    """A module failed its isolated import check."""

    module: str
    planner_name: str | None


#: The phases of a sandboxed check, in order: what `SandboxTimeout.phase` can name.
SANDBOX_PHASES: tuple[str, ...] = ("import", "class_lookup", "metadata", "instantiate", "self_test")

# phase -> (what hung, in a sentence; the same, short; what to do about it)
_PHASE_WORDING: dict[str | None, tuple[str, str, str]] = {
    "import": (
        "Importing module {module!r}",
        "its import",
        "Make its import fast (no work at import time)",
    ),
    "class_lookup": (
        "Looking up class {qualname!r} in module {module!r}",
        "looking up its class",
        "Make the lookup fast (no slow module __getattr__ or metaclass)",
    ),
    "metadata": (
        "Reading the metadata of {subject}",
        "reading its metadata",
        "Make its metadata plain class attributes (no slow properties)",
    ),
    "instantiate": ("Instantiating {subject}", "instantiating it", "Make its __init__ fast"),
    "self_test": ("self_test() of {subject}", "self_test()", "Make self_test fast"),
    None: (
        "The sandboxed check of module {module!r}",
        "the check",
        "Make its import and self_test fast",
    ),
}


class SandboxTimeout(SandboxError):
    """A sandboxed check did not finish in time. `phase` names the phase it hung in (one of
    `SANDBOX_PHASES`, None if the child never reached one); `reason` is the short form a
    quarantine entry keeps."""

    def __init__(
        self,
        module: str,
        timeout_s: float,
        planner_name: str | None = None,
        *,
        phase: str | None = None,
        qualname: str | None = None,
    ) -> None:
        sentence, short, fix = _PHASE_WORDING.get(phase, _PHASE_WORDING[None])
        if planner_name:
            subject = f"planner {planner_name!r} in module {module!r}"
        else:
            subject = f"class {qualname or '?'!r} in module {module!r}"
        what = sentence.format(module=module, qualname=qualname or "?", subject=subject)
        where = f" (phase {phase})" if phase else ""
        super().__init__(
            f"{what} did not finish within {timeout_s:g} s in the sandbox{where}; the child "
            f"was killed. {fix} or raise FACTORY_SANDBOX_TIMEOUT_S.",
            where="sandbox",
            context={
                "module": module,
                "timeout_s": timeout_s,
                "planner_name": planner_name,
                "phase": phase,
            },
        )
        self.module = module
        self.timeout_s = timeout_s
        self.planner_name = planner_name
        self.phase = phase
        self.reason = f"{short} did not finish within {timeout_s:g} s{where}"


class SandboxImportError(SandboxError):
    def __init__(
        self,
        module: str,
        reason: str,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        traceback_tail: str = "",
        output_tail: str = "",
        planner_name: str | None = None,
    ) -> None:
        message = f"Module {module!r} failed its sandboxed import: {reason}."
        if traceback_tail:
            message += f"\n{traceback_tail.rstrip()}"
        super().__init__(
            message,
            where="sandbox",
            context={
                "module": module,
                "reason": reason,
                "exit_code": exit_code,
                "signal": signal,
                "planner_name": planner_name,
            },
        )
        self.module = module
        self.reason = reason
        self.exit_code = exit_code
        self.signal = signal
        self.traceback_tail = traceback_tail
        self.output_tail = output_tail
        self.planner_name = planner_name


class PlannerDiscoveryError(PlannerError):
    """A plugin source could not be read."""


class InvalidPlannerMetadata(PlannerDiscoveryError):
    """A planner declares metadata of the wrong shape (an unknown tier, a non-string tag...)."""

    def __init__(self, target: str, attribute: str, problem: str) -> None:
        super().__init__(
            f"Planner {target!r} declares an invalid {attribute!r}: {problem}.",
            where="metadata",
            context={"target": target, "attribute": attribute},
        )
        self.target = target
        self.attribute = attribute
        self.problem = problem


class PlannerInstantiationError(PlannerError):
    def __init__(self, planner_name: str, module: str, cause: str) -> None:
        super().__init__(
            f"Planner {planner_name!r} from module {module!r} could not be built: {cause}.",
            where="instantiation",
            context={"planner_name": planner_name, "module": module},
        )
        self.planner_name = planner_name
        self.module = module
        self.cause = cause


class PlanExecutionError(PlannerError):
    """A planner's `plan()` raised or returned something that is not a `Plan`."""

    def __init__(self, planner_name: str, cause: str) -> None:
        super().__init__(
            f"Planner {planner_name!r} failed to plan: {cause.rstrip('.')}.",
            where="plan",
            context={"planner_name": planner_name},
        )
        self.planner_name = planner_name
        self.cause = cause


class RunStopped(PlannerError):
    """A run's deadline passed or it was cancelled; raised by `Run.check()` inside the planner,
    so the planner's thread stops at its next check instead of working on unseen."""

    def __init__(self, run_id: str, reason: str) -> None:
        who = f"Run {run_id}" if run_id else "The run"
        super().__init__(
            f"{who} stopped: {reason}. Give the run a larger timeout if it needs more time.",
            where="run",
            context={"run_id": run_id, "reason": reason},
        )
        self.run_id = run_id
        self.reason = reason


class InvalidContext(PlannerError):
    """A context its planner cannot read: the caller's error, never a fault of the planner.

    Raised by a context kind's validator (and by a planner's own deeper checks); `field` names
    the part of the context at fault, `kind` the context kind it was checked as. Every layer
    tells it apart from a planner failure: it never counts against a planner's reliability or
    circuit breaker, and the service answers it with 422.
    """

    #: Longest field path and problem kept: a context's keys come from the caller, and a huge
    #: one must not flood a message, a log line or a response.
    LIMIT = 200

    def __init__(
        self, field: str, problem: str, *, kind: str | None = None, source: str = "context"
    ) -> None:
        field, problem = _cut(str(field), self.LIMIT), _cut(str(problem), 2 * self.LIMIT)
        super().__init__(
            f"{source}: {field}: {problem}. Fix that field and try again.",
            where="context",
            context={"field": field, "kind": kind, "source": source},
        )
        self.field = field
        self.problem = problem
        self.kind = kind
        self.source = source


class PlannerSelectionError(PlannerError):
    """A selection request is malformed (for example a non-string capability)."""


class NoActivePlannersError(PlannerSelectionError):
    def __init__(self, objective: str, exclusions: Mapping[str, str]) -> None:
        if exclusions:
            detail = "; ".join(f"{name}: {why}" for name, why in sorted(exclusions.items()))
            message = f"No planner can serve {objective!r}. {detail}."
        else:
            message = (
                f"No planner can serve {objective!r}: none is registered. Install a plugin, "
                "set FACTORY_PLUGIN_DIRS, or register a class with factory.register()."
            )
        super().__init__(
            message, where="selection", context={"objective": objective, **dict(exclusions)}
        )
        self.objective = objective
        self.exclusions = dict(exclusions)


class DocumentError(PlannerError):
    """A document that cannot be read as given (HTTP 400)."""

    def __init__(self, source: str, problem: str, **context: Any) -> None:
        super().__init__(f"{source}: {problem}", where="document", context=context)
        self.source = source
        self.problem = problem


class DocumentTooDeep(DocumentError):
    """Nested deeper than `PLANFORGE_MAX_NESTING`."""

    def __init__(self, source: str, limit: int) -> None:
        super().__init__(
            source,
            f"nested deeper than the {limit} levels allowed (PLANFORGE_MAX_NESTING); "
            "flatten the document",
            limit=limit,
        )
        self.limit = limit


class NonFiniteNumber(DocumentError):
    """NaN, an infinity, or a number too large for a float (HTTP 422: a value's fault)."""

    def __init__(self, source: str, field: str, value: float) -> None:
        super().__init__(
            source,
            f"{field}: must be a finite number, got {value} (NaN, Infinity and numbers "
            "beyond +-1.7e308 are not). Fix that field and try again.",
            field=field,
        )
        self.field = field


class CircuitOpenError(PlannerError):
    """A call was refused because its circuit breaker does not permit calls right now.

    `state` is the breaker's state (a `BreakerState`, a string enum: "open", "half_open",
    "forced_open", ...); it is typed as a string here because errors sit below the factory.
    """

    def __init__(self, breaker_name: str, retry_after_s: float | None, state: str) -> None:
        if state == "forced_open":
            advice = "It was forced open by an operator; reset it to let calls through."
        elif retry_after_s is None or retry_after_s <= 0.0:
            advice = "Its trial calls are in flight; retry in a moment."
        else:
            advice = (
                f"Calls are refused for another {retry_after_s:.3g} s after repeated failures; "
                "retry then, or reset the breaker once the cause is fixed."
            )
        super().__init__(
            f"Circuit breaker {breaker_name!r} is {state!s}. {advice}",
            where="breaker",
            context={
                "breaker_name": breaker_name,
                "retry_after_s": retry_after_s,
                "state": str(state),
            },
        )
        self.breaker_name = breaker_name
        self.retry_after_s = retry_after_s
        self.state = state
