from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from planforge.contract import (
    RUN_MODULE_COMPLETED,
    RUN_MODULE_FAILED,
    RUN_MODULE_STARTED,
    RUN_PROGRESS,
    Plan,
    Planner,
    PlannerRef,
    PlannerSpec,
    PlanStep,
    Run,
    RunEvent,
    RunStopped,
    _spec_checked,
    _spec_if_plain,
    accepts_run,
    spec_from_attributes,
)
from planforge.errors import InvalidPlannerMetadata, PlannerError


class _Echo(Planner):
    name = "echo"
    version = "1.0.0"
    capabilities = ("b", "a", "a")
    tier = "stable"
    reliability_score = 0.5
    keywords = ("echo",)

    def plan(self, objective: str, context: Any) -> Plan:
        return self.new_plan(objective, [PlanStep(id="1", action="say", description=objective)])


def test_plan_round_trips_through_json_without_loss() -> None:
    plan = Plan(
        objective="rebalance",
        planner=PlannerRef(name="p", version="1.2.3"),
        steps=[
            PlanStep(id="s1", action="sell", params={"symbol": "AAA", "qty": 3, "px": 0.1}),
            PlanStep(id="s2", action="buy", depends_on=["s1"], tags=["core"]),
        ],
        score=0.7342,
        metrics={"cash": 12.5},
        warnings=["module x degraded"],
    )
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan
    assert json.loads(again.model_dump_json()) == json.loads(plan.model_dump_json())


def test_an_explanation_round_trips_and_is_absent_when_nobody_asked() -> None:
    plain = Plan(objective="o", planner=PlannerRef(name="p"))
    assert "explanation" not in json.loads(plain.model_dump_json())
    assert "explanation" not in plain.model_dump(mode="json")
    explained = plain.model_copy(update={"explanation": {"stages": [{"kept": 3}], "why": None}})
    again = Plan.model_validate_json(explained.model_dump_json())
    assert again.explanation == {"stages": [{"kept": 3}], "why": None}
    assert again.plan_id == plain.plan_id  # the same plan, explained


def test_a_run_is_not_asked_to_explain_unless_it_says_so() -> None:
    assert Run("r").explain is False
    assert Run("r", explain=True).explain is True


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    params=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    score=st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_json_params_round_trip(params: dict[str, Any], score: float) -> None:
    plan = Plan(
        objective="o",
        planner=PlannerRef(name="p"),
        steps=[PlanStep(id="a", action="x", params=params)],
        score=score,
    )
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_plan_id_is_a_deterministic_digest_of_content() -> None:
    first = _Echo().plan("hello", {})
    second = _Echo().plan("hello", {})
    other = _Echo().plan("bye", {})
    assert first.plan_id == second.plan_id
    assert first.plan_id != other.plan_id


def test_plan_rejects_unknown_dependencies_and_duplicate_ids() -> None:
    with pytest.raises(ValidationError, match="unknown steps"):
        Plan(
            objective="o",
            planner=PlannerRef(name="p"),
            steps=[PlanStep(id="a", action="x", depends_on=["zz"])],
        )
    with pytest.raises(ValidationError, match="unique"):
        Plan(
            objective="o",
            planner=PlannerRef(name="p"),
            steps=[PlanStep(id="a", action="x"), PlanStep(id="a", action="y")],
        )


def test_plan_rejects_non_finite_metrics() -> None:
    with pytest.raises(ValidationError, match="finite"):
        Plan(objective="o", planner=PlannerRef(name="p"), metrics={"x": float("nan")})


def test_class_spec_sorts_and_deduplicates_and_round_trips() -> None:
    spec = _Echo.spec()
    assert spec.capabilities == ("a", "b")
    assert spec.target.endswith(":_Echo")
    assert spec.metadata_from == "class"
    assert PlannerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    ("attrs", "attribute"),
    [
        ({"name": "x", "tier": "platinum"}, "tier"),
        ({"name": "x", "capabilities": "rebalance"}, "capabilities"),
        ({"name": "x", "tags": ("ok", 3)}, "tags"),
        ({"name": "x", "reliability_score": 1.5}, "reliability_score"),
        ({"name": "x", "reliability_score": True}, "reliability_score"),
        ({"name": "x", "production_ready": "yes"}, "production_ready"),
        ({"name": "has space"}, "name"),
        ({}, "name"),
        ({"name": "x", "context_kind": ""}, "context_kind"),
        ({"name": "x", "context_kind": "two words"}, "context_kind"),
        ({"name": "x", "context_kind": ("portfolio",)}, "context_kind"),
        ({"name": "x", "context_kind": "portf\u00f6lio"}, "context_kind"),
    ],
)
def test_invalid_metadata_names_the_attribute(attrs: dict[str, Any], attribute: str) -> None:
    with pytest.raises(InvalidPlannerMetadata) as info:
        spec_from_attributes(attrs, target="m:C", source="code")
    assert info.value.attribute == attribute
    assert attribute in str(info.value)


def test_missing_attributes_take_defaults() -> None:
    spec = spec_from_attributes({"name": "bare"}, target="m:C", source="directory")
    assert (spec.tier, spec.version, spec.reliability_score, spec.stateful) == (
        "beta",
        "0.0.0",
        None,
        False,
    )
    assert spec.context_kind == "any"  # reads any mapping and checks it itself


def test_a_declared_context_kind_reaches_the_spec_and_round_trips() -> None:
    class Reader(Planner):
        name = "reader"
        context_kind = "portfolio"

    spec = Reader.spec()
    assert spec.context_kind == "portfolio"
    assert spec.to_dict()["context_kind"] == "portfolio"
    assert PlannerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # a record written before context kinds existed reads as "any", never as garbage
    legacy = {k: v for k, v in spec.to_dict().items() if k != "context_kind"}
    assert PlannerSpec.from_dict(legacy).context_kind == "any"


def test_aplan_runs_plan_off_the_loop() -> None:
    import asyncio

    plan = asyncio.run(_Echo().aplan("hi", {}))
    assert plan.steps[0].description == "hi"


attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(-0.5, 1.5),
    st.sampled_from(["", "x", "a b", "n\u00a0m", "stable", "vip", "a,b", "rebalance", "any", "1x"]),
    st.lists(st.sampled_from(["", "a", "b", "c", 3]), max_size=3).map(tuple),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "version",
                "capabilities",
                "tags",
                "tier",
                "production_ready",
                "reliability_score",
                "description",
                "keywords",
                "stateful",
                "context_kind",
            ]
        ),
        attribute_values,
    ),
    st.sampled_from(["", "fallback"]),
)
@example(attributes={"name": None}, default_name="fallback")  # a None name is not "no name"
def test_fast_validation_agrees_with_the_checked_path(
    attributes: dict[str, Any], default_name: str
) -> None:
    fields = {
        "target": "m:C",
        "source": "directory",
        "origin": "",
        "path": None,
        "fingerprint": "",
        "metadata_from": "ast",
        "default_name": default_name,
    }
    fast = _spec_if_plain(attributes, *fields.values())
    try:
        checked = _spec_checked(attributes, **fields)
    except InvalidPlannerMetadata:
        assert fast is None
        return
    if fast is not None:
        assert fast == checked


# -- the run protocol --------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_runs_deadline_is_its_timeout_after_it_was_made() -> None:
    clock = _Clock()
    run = Run("r1", timeout_s=2.0, clock=clock)
    assert run.deadline == 102.0
    assert run.remaining_s == 2.0
    assert not run.expired
    run.check()  # nothing to say yet
    clock.now = 102.0
    assert run.expired
    assert run.remaining_s == 0.0
    with pytest.raises(RunStopped, match="Run r1 stopped: its deadline passed") as caught:
        run.check()
    assert caught.value.run_id == "r1"
    assert "larger timeout" in caught.value.message


def test_a_cancelled_run_stops_with_the_reason_given_first() -> None:
    run = Run("r2")
    assert run.deadline is None
    assert run.remaining_s is None
    assert not run.expired
    run.cancel("it timed out after 0.1 s")
    run.cancel("a later reason")
    assert run.expired
    assert run.remaining_s == 0.0
    with pytest.raises(RunStopped, match=r"it timed out after 0\.1 s"):
        run.check()


@pytest.mark.parametrize("timeout", [0, -1.0, True, "3"])
def test_a_run_refuses_a_timeout_that_is_not_a_positive_number(timeout: Any) -> None:
    with pytest.raises(PlannerError, match="positive number of seconds"):
        Run("r", timeout_s=timeout)


def test_a_runs_events_reach_its_sink_read_only_and_without_a_sink_nowhere() -> None:
    events: list[RunEvent] = []
    run = Run("r3", config="conservative", sink=events.append)
    run.module_started("m", operation="go")
    run.module_completed("m", 1.5, operation="go", slow=True)
    run.module_failed("m", 2.0, "boom", error_type="ValueError")
    run.progress(1, 4, "a quarter")
    run.emit("custom")
    assert [e.type for e in events] == [
        RUN_MODULE_STARTED,
        RUN_MODULE_COMPLETED,
        RUN_MODULE_FAILED,
        RUN_PROGRESS,
        "custom",
    ]
    assert {e.run_id for e in events} == {"r3"}
    assert events[1].payload == {"module": "m", "operation": "go", "duration_ms": 1.5, "slow": True}
    assert events[3].payload == {"done": 1, "total": 4, "message": "a quarter"}
    with pytest.raises(TypeError):
        events[0].payload["module"] = "changed"  # type: ignore[index]
    assert run.config == "conservative"
    Run("r4").progress(1, 1)  # no sink: nothing happens, nothing raises


def test_only_a_literal_true_declares_the_run_protocol() -> None:
    class Aware(_Echo):
        accepts_run = True

    class Truthy(_Echo):
        accepts_run = 1  # type: ignore[assignment]

    assert accepts_run(Aware)
    assert accepts_run(Aware())
    assert not accepts_run(_Echo)
    assert not accepts_run(_Echo())
    assert not accepts_run(Truthy)
    assert not Planner.accepts_run
