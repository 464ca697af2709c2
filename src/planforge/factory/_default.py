"""The module-level API: the original factory's function names on one default factory.

This is the only global state in planforge. `set_default_factory` swaps it (tests, embedding
applications); everything else is an object you construct.

Each function is made from the `PlannerFactory` method of the same name by `_on_default`, so
its parameters are written once, on the method. The names are listed once, in `planforge._api`,
where `import planforge` reads them without importing the factory; the assignments below
define them (a test checks that each is defined). They are plain assignments (not a loop over
names) so that mypy, IDEs and `help()` see every function with the method's real signature
and docstring: `_on_default` is typed with a `ParamSpec`, which carries the parameters
through to the function it returns.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from planforge._api import MODULE_API
from planforge.factory._core import PlannerFactory

__all__ = [*MODULE_API]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_lock = threading.Lock()
_factory: PlannerFactory | None = None


def default_factory() -> PlannerFactory:
    """The process-wide factory, built from the environment on first use."""
    global _factory
    factory = _factory
    if factory is None:
        with _lock:
            if _factory is None:
                _factory = PlannerFactory()
            factory = _factory
    return factory


def set_default_factory(factory: PlannerFactory | None) -> PlannerFactory | None:
    """Replace the default factory (None: rebuild from the environment on next use)."""
    global _factory
    with _lock:
        previous, _factory = _factory, factory
    return previous


def _present(function: Any, method: Callable[..., Any]) -> None:
    """Name, docstring and signature (without `self`) of `method`, for `help()`."""
    functools.update_wrapper(function, method)
    function.__module__ = __name__
    function.__qualname__ = method.__name__
    signature = inspect.signature(method)
    function.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    del function.__wrapped__  # `inspect` would show the method's `self` again


def _on_default(method: Callable[Concatenate[PlannerFactory, _P], _R]) -> Callable[_P, _R]:
    """`method`, called on the default factory."""
    name = method.__name__

    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        bound: Callable[_P, _R] = getattr(default_factory(), name)
        return bound(*args, **kwargs)

    _present(call, method)
    return call


def _on_default_async(
    method: Callable[Concatenate[PlannerFactory, _P], Awaitable[_R]],
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """The async `method`, awaited on the default factory."""
    name = method.__name__

    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        bound: Callable[_P, Awaitable[_R]] = getattr(default_factory(), name)
        return await bound(*args, **kwargs)

    _present(call, method)
    return call


discover = _on_default(PlannerFactory.discover)
refresh_metadata = _on_default(PlannerFactory.refresh_metadata)
reload_planners = _on_default(PlannerFactory.reload_planners)
register = _on_default(PlannerFactory.register)
register_context_kind = _on_default(PlannerFactory.register_context_kind)
admit_context = _on_default(PlannerFactory.admit_context)
get_planner = _on_default(PlannerFactory.get_planner)
list_planners = _on_default(PlannerFactory.list_planners)
check_planners = _on_default(PlannerFactory.check_planners)
get_all_planners = _on_default(PlannerFactory.get_all_planners)
select_best_planner = _on_default(PlannerFactory.select_best_planner)
select_best_planner_name = _on_default(PlannerFactory.select_best_planner_name)
batch_select_best_planners = _on_default(PlannerFactory.batch_select_best_planners)
explain_selection = _on_default(PlannerFactory.explain_selection)
run_plan = _on_default(PlannerFactory.run_plan)
self_heal = _on_default(PlannerFactory.self_heal)
planner_stats = _on_default(PlannerFactory.planner_stats)
describe_planner = _on_default(PlannerFactory.describe_planner)
diagnostics_json = _on_default(PlannerFactory.diagnostics_json)
diagnostics_report = _on_default(PlannerFactory.diagnostics_report)
export_diagnostics = _on_default(PlannerFactory.export_diagnostics)
health_check = _on_default(PlannerFactory.health_check)
list_quarantined = _on_default(PlannerFactory.list_quarantined)
release_quarantine = _on_default(PlannerFactory.release_quarantine)
selection_profiles = _on_default(PlannerFactory.selection_profiles)
instantiation_profiles = _on_default(PlannerFactory.instantiation_profiles)
aselect_best_planner_name = _on_default_async(PlannerFactory.aselect_best_planner_name)
aexplain_selection = _on_default_async(PlannerFactory.aexplain_selection)
arun_plan = _on_default_async(PlannerFactory.arun_plan)
