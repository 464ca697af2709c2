from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from planforge.errors import PlannerError
from planforge.factory import BreakerConfig
from planforge.holistic import EngineSettings, PerformanceTracker
from planforge.holistic._events import (
    MODULE_COMPLETED,
    MODULE_FAILED,
    MODULE_SKIPPED,
    MODULE_STARTED,
    EventHub,
)
from planforge.holistic._resilience import ModuleCall, ModuleGuard, breaker_config_from_settings

KEY = "filters.diversity"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so a 'hanging' module call always ends with its test."""
    event = threading.Event()
    yield event
    event.set()


def wait_until(condition: object, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def half_open_guard(*keys: str, events: EventHub | None = None) -> ModuleGuard:
    """A guard (5 s timeout) whose breakers for `keys` have tripped and waited: each is half
    open with one trial permitted."""
    clock = FakeClock()
    config = BreakerConfig(
        window_size=4, minimum_calls=2, wait_s=12.0, permitted_calls_in_half_open=1
    )
    guard = ModuleGuard(breaker_config=config, default_timeout_s=5.0, clock=clock)

    def broken() -> None:
        raise RuntimeError("down")

    for key in keys:
        for _ in range(2):
            guard.call(key, broken, default=None)
    clock.now += 12.0
    if events is not None:
        guard.events = events  # only what follows
    return guard


@contextlib.contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """A real interrupt (SIGALRM raising KeyboardInterrupt) reaches the block after `seconds`."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def types(hub: EventHub) -> list[str]:
    return [event.type for event in hub.recent()]


def test_a_successful_call_returns_its_result_times_it_and_reports_events() -> None:
    hub, tracker = EventHub(), PerformanceTracker()
    with ModuleGuard(events=hub, perf=tracker, default_timeout_s=None) as guard:
        result, warning = guard.call(KEY, lambda x: [x, x], 3, default=[], operation="apply")
    assert (result, warning) == ([3, 3], None)
    assert types(hub) == [MODULE_STARTED, MODULE_COMPLETED]
    completed = hub.recent()[-1].payload
    assert completed["module"] == KEY
    assert completed["operation"] == "apply"
    stats = tracker.stats(KEY, "apply")
    assert stats is not None
    assert (stats.count, stats.errors) == (1, 0)


def test_a_raising_module_contributes_the_default_and_a_warning_naming_it() -> None:
    hub = EventHub()

    def broken() -> list[int]:
        raise ValueError("weights must sum to 1")

    with ModuleGuard(events=hub) as guard:  # default timeout: runs on a worker thread
        result, warning = guard.call(KEY, broken, default=[], run_id="r1")
        inline, inline_warning = guard.call(KEY, broken, default=[], timeout_s=None)
        snapshot = guard.snapshots()[KEY]
    assert result == []
    assert inline == []
    assert warning == inline_warning == f"{KEY} failed: ValueError: weights must sum to 1"
    failed = [e for e in hub.recent() if e.type == MODULE_FAILED]
    assert len(failed) == 2
    assert failed[0].run_id == "r1"
    assert failed[0].payload["error_type"] == "ValueError"
    assert snapshot["failures_in_window"] == 2
    assert "weights must sum to 1" in snapshot["last_error"]


def test_a_hanging_module_times_out_and_its_worker_is_reported_until_it_returns(
    release: threading.Event,
) -> None:
    hub = EventHub()
    guard = ModuleGuard(events=hub, default_timeout_s=0.2)
    result, warning = guard.call(KEY, release.wait, 30.0, default=["fallback"])
    assert result == ["fallback"]
    assert warning == f"{KEY} timed out after 0.2 s"
    assert types(hub) == [MODULE_STARTED, MODULE_FAILED]
    assert hub.recent()[-1].payload["error_type"] == "timeout"
    assert guard.stuck_workers == 1
    release.set()
    wait_until(lambda: guard.stuck_workers == 0)
    assert guard.call(KEY, lambda: "ok", default="x") == ("ok", None)
    guard.close()


def test_when_every_worker_is_stuck_calls_fail_fast_instead_of_queueing(
    release: threading.Event,
) -> None:
    hub = EventHub()
    guard = ModuleGuard(events=hub, default_timeout_s=0.1, max_workers=1)
    guard.call("filters.hang", release.wait, 30.0, default=None)
    ran: list[int] = []
    result, warning = guard.call(KEY, lambda: ran.append(1), default="skipped")
    assert result == "skipped"
    assert ran == []
    assert warning == f"{KEY} skipped: all 1 module workers are stuck in calls that timed out"
    assert hub.recent()[-1].type == MODULE_SKIPPED
    # not the module's fault: its breaker saw no call
    assert guard.snapshots()[KEY]["calls_in_window"] == 0
    release.set()
    wait_until(lambda: guard.stuck_workers == 0)
    assert guard.call(KEY, lambda: 7, default=0) == (7, None)
    guard.close()


def test_a_forced_open_module_is_skipped_without_running() -> None:
    hub = EventHub()
    guard = ModuleGuard(events=hub)
    guard.force_open(KEY)
    ran: list[int] = []
    result, warning = guard.call(KEY, lambda: ran.append(1), default="d")
    assert (result, ran) == ("d", [])
    assert warning is not None
    assert warning.startswith(f"{KEY} skipped: circuit breaker forced open")
    assert types(hub) == [MODULE_SKIPPED]
    assert hub.recent()[-1].payload["state"] == "forced_open"
    guard.reset(KEY)
    assert guard.call(KEY, lambda: 1, default=0) == (1, None)
    guard.close()


def test_repeated_failures_open_the_breaker_and_the_skip_says_when_to_retry() -> None:
    clock = FakeClock()
    config = BreakerConfig(window_size=4, minimum_calls=2, failure_rate_threshold=0.5, wait_s=12.0)
    hub = EventHub()
    guard = ModuleGuard(breaker_config=config, events=hub, default_timeout_s=None, clock=clock)

    def broken() -> None:
        raise RuntimeError("down")

    for _ in range(2):
        guard.call(KEY, broken, default=None)
    assert guard.snapshots()[KEY]["state"] == "open"
    ran: list[int] = []
    _, warning = guard.call(KEY, lambda: ran.append(1), default=None)
    assert warning == f"{KEY} skipped: circuit breaker open (retry in 12.0 s)"
    assert ran == []
    skipped = hub.recent()[-1]
    assert skipped.type == MODULE_SKIPPED
    assert skipped.payload["retry_after_s"] == 12.0
    clock.now += 12.0  # the wait is over: a trial call goes through
    assert guard.call(KEY, lambda: "back", default=None) == ("back", None)


def test_slow_calls_trip_the_breaker_through_the_slow_call_rate() -> None:
    clock = FakeClock()
    settings = EngineSettings(
        slow_call_s=1.0, breaker_window=3, breaker_min_calls=3, module_timeout_s=0
    )
    guard = ModuleGuard.from_settings(settings, clock=clock)
    assert guard.default_timeout_s is None  # 0 in the settings means inline

    def slow() -> str:
        clock.now += 5.0  # the module takes 5 s on the guard's clock
        return "late but right"

    for _ in range(3):
        result, warning = guard.call(KEY, slow, default="")
        assert (result, warning) == ("late but right", None)  # slow is not a failure
    snapshot = guard.snapshots()[KEY]
    assert snapshot["state"] == "open"
    assert snapshot["trips"] == 1
    _, warning = guard.call(KEY, slow, default="")
    assert warning is not None
    assert "circuit breaker open" in warning


def test_a_disabled_breaker_never_trips() -> None:
    guard = ModuleGuard(
        breaker_config=BreakerConfig(window_size=2, minimum_calls=1), default_timeout_s=None
    )
    guard.disable_breaker(KEY)

    def broken() -> None:
        raise RuntimeError("x")

    for _ in range(5):
        _, warning = guard.call(KEY, broken, default=None)
        assert warning == f"{KEY} failed: RuntimeError: x"
    assert guard.snapshots()[KEY]["state"] == "disabled"


def test_inline_calls_stay_on_the_caller_thread_and_timed_calls_use_named_workers() -> None:
    names: list[str] = []

    def where() -> None:
        names.append(threading.current_thread().name)

    with ModuleGuard(default_timeout_s=5.0) as guard:
        guard.call(KEY, where, default=None, timeout_s=None)
        guard.call(KEY, where, default=None)
    assert names[0] == threading.current_thread().name
    assert names[1].startswith("planforge-module-")


def test_breaker_config_follows_the_engine_settings() -> None:
    settings = EngineSettings(
        breaker_window=10,
        breaker_min_calls=4,
        breaker_failure_rate=0.25,
        breaker_open_s=7.0,
        slow_call_s=0.5,
    )
    config = breaker_config_from_settings(settings)
    assert (config.window_size, config.minimum_calls) == (10, 4)
    assert config.failure_rate_threshold == 0.25
    assert (config.wait_s, config.max_wait_s) == (7.0, 70.0)
    assert config.slow_call_threshold_s == 0.5


def test_bad_guard_arguments_are_clear_errors() -> None:
    with pytest.raises(PlannerError, match="max_workers"):
        ModuleGuard(max_workers=0)
    guard = ModuleGuard(max_modules=1)
    with pytest.raises(PlannerError, match="timeout"):
        guard.call(KEY, lambda: None, default=None, timeout_s=-1.0)
    guard.call("a.one", lambda: None, default=None, timeout_s=None)
    with pytest.raises(PlannerError, match="would exceed the bound"):
        guard.call("a.two", lambda: None, default=None, timeout_s=None)


def test_a_caller_interrupted_while_waiting_gives_back_its_trial_permit(
    release: threading.Event,
) -> None:
    guard = half_open_guard(KEY)
    with interrupted_after(0.05), pytest.raises(KeyboardInterrupt):
        guard.call(KEY, release.wait, default=None)
    release.set()
    assert guard.call(KEY, lambda: "back", default=None) == ("back", None)


# -- a stage's calls in one batch ---------------------------------------------------------


class Stopped(Exception):
    """What a run's check raises when the run must stop."""


def _batch_modules(seen: list[str]) -> list[ModuleCall]:
    def ok(name: str) -> list[str]:
        seen.append(name)
        return [name]

    def broken() -> list[str]:
        seen.append("broken")
        raise ValueError("no data")

    return [
        ModuleCall("patterns.a", ok, ("a",), [], "generate", "r1"),
        ModuleCall("patterns.broken", broken, (), ["fallback"], "generate", "r1"),
        ModuleCall("patterns.closed", ok, ("closed",), [], "generate", "r1"),
        ModuleCall("patterns.b", ok, ("b",), [], "generate", "r1"),
    ]


def test_a_batch_reports_every_module_as_one_call_each_would() -> None:
    outcomes, events = [], []
    for batched in (True, False):
        hub, seen = EventHub(), []
        with ModuleGuard(events=hub, default_timeout_s=5.0) as guard:
            guard.force_open("patterns.closed")
            calls = _batch_modules(seen)
            if batched:
                outcomes.append(guard.call_each(calls))
            else:
                outcomes.append(
                    [guard.call(c.module_key, c.fn, *c.args, default=c.default) for c in calls]
                )
        events.append([(e.type, e.payload["module"]) for e in hub.recent()])
        assert seen == ["a", "broken", "b"]
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == (["fallback"], "patterns.broken failed: ValueError: no data")
    assert outcomes[0][2][1] is not None
    assert outcomes[0][2][1].startswith("patterns.closed skipped")
    assert events[0] == events[1]
    assert events[0][:3] == [
        (MODULE_STARTED, "patterns.a"),
        (MODULE_COMPLETED, "patterns.a"),
        (MODULE_STARTED, "patterns.broken"),
    ]


def _note_thread(into: list[int]) -> None:
    into.append(threading.get_ident())


def test_a_batch_costs_one_worker_and_an_inline_guard_runs_it_in_the_callers_thread() -> None:
    for timeout, expect_worker in ((5.0, True), (None, False)):
        threads: list[int] = []
        calls = [ModuleCall(f"patterns.m{n}", _note_thread, (threads,), None) for n in range(5)]
        with ModuleGuard(default_timeout_s=timeout) as guard:
            guard.call_each(calls)
        assert len(set(threads)) == 1
        assert (threads[0] != threading.get_ident()) == expect_worker


def test_a_hanging_module_in_a_batch_times_out_and_the_rest_still_run_once(
    release: threading.Event,
) -> None:
    ran: list[str] = []
    calls = [
        ModuleCall("patterns.a", ran.append, ("a",), "a?"),
        ModuleCall("patterns.hang", release.wait, (30.0,), "fallback"),
        ModuleCall("patterns.b", ran.append, ("b",), "b?"),
    ]
    guard = ModuleGuard(default_timeout_s=0.2)
    outcomes = guard.call_each(calls)
    assert outcomes[0] == (None, None)
    assert outcomes[1] == ("fallback", "patterns.hang timed out after 0.2 s")
    assert outcomes[2] == (None, None)
    assert ran == ["a", "b"]
    assert guard.stuck_workers == 1
    release.set()
    wait_until(lambda: guard.stuck_workers == 0)
    time.sleep(0.05)
    assert ran == ["a", "b"]  # the batch's worker did not go on to run b a second time
    guard.close()


def test_a_run_stopped_between_batched_modules_stops_there_and_gives_back_permits() -> None:
    hub, ran = EventHub(), []
    stop = threading.Event()

    def check() -> None:
        if stop.is_set():
            raise Stopped("its deadline passed")

    def first() -> None:
        ran.append("first")
        stop.set()

    calls = [
        ModuleCall("patterns.first", first, (), None),
        ModuleCall("patterns.second", ran.append, ("second",), None),
    ]
    with half_open_guard("patterns.second", events=hub) as guard:  # its trial: the batch's
        with pytest.raises(Stopped):
            guard.call_each(calls, check=check)
        assert ran == ["first"]
        assert [e.payload["module"] for e in hub.recent()] == ["patterns.first"] * 2
        result, warning = guard.call("patterns.second", lambda: "ran", default=None)
    assert (result, warning) == ("ran", None)  # the trial permit came back


def test_an_interrupt_inside_a_batched_module_reaches_the_caller_and_ends_the_batch() -> None:
    ran: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    calls = [
        ModuleCall("patterns.stop", interrupted, (), None),
        ModuleCall("patterns.after", ran.append, ("after",), None),
    ]
    with ModuleGuard(default_timeout_s=5.0) as guard, pytest.raises(KeyboardInterrupt):
        guard.call_each(calls)
    time.sleep(0.05)
    assert ran == []


def test_a_module_ending_just_after_its_timeout_lets_the_batch_keep_the_next_one() -> None:
    """The caller is slow to react to a timeout (a slow event handler): meanwhile the worker
    finished the late module and took the next. That one is collected from the batch, not
    run a second time, and the worker is not counted as stuck."""
    hub, ran = EventHub(), []

    def slow_reader(event: object) -> None:
        if getattr(event, "type", "") == MODULE_FAILED:
            time.sleep(0.4)

    hub.subscribe(slow_reader)
    calls = [
        ModuleCall("patterns.late", time.sleep, (0.35,), "late?"),
        ModuleCall("patterns.next", lambda: ran.append("next") or "next", (), "next?"),
    ]
    with ModuleGuard(events=hub, default_timeout_s=0.2) as guard:
        outcomes = guard.call_each(calls)
        assert guard.stuck_workers == 0
    assert outcomes == [("late?", "patterns.late timed out after 0.2 s"), ("next", None)]
    time.sleep(0.05)
    assert ran == ["next"]


def test_a_caller_interrupted_while_waiting_on_a_batch_gives_back_its_trial_permits(
    release: threading.Event,
) -> None:
    guard = half_open_guard("patterns.first", "patterns.second")  # both trials: the batch's
    calls = [
        ModuleCall("patterns.first", release.wait, (30.0,), None),
        ModuleCall("patterns.second", lambda: "second", (), None),
    ]

    with interrupted_after(0.05), pytest.raises(KeyboardInterrupt):
        guard.call_each(calls)
    release.set()
    assert guard.call("patterns.first", lambda: "back", default=None) == ("back", None)
    assert guard.call("patterns.second", lambda: "back", default=None) == ("back", None)
    guard.close()
