from __future__ import annotations

import json
import math

import pytest

from planforge.runtime import (
    AGENT_COMPLETED,
    AGENT_ERROR,
    AGENT_STARTED,
    AGENT_THINKING,
    EVENT_TYPES,
    TOOL_COMPLETED,
    TOOL_EXECUTING,
    InvalidEventError,
    RuntimeEvent,
)


def make(**fields: object) -> RuntimeEvent:
    values: dict[str, object] = {
        "user_id": "alice",
        "run_id": "run-1",
        "sequence": 1,
        "type": AGENT_STARTED,
        "ts": 1_700_000_000.25,
        "payload": {"agent_name": "holistic"},
    }
    values.update(fields)
    return RuntimeEvent(**values)  # type: ignore[arg-type]


def test_the_six_event_types() -> None:
    assert EVENT_TYPES == (
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
        "agent_error",
    )
    assert EVENT_TYPES[:3] == (AGENT_STARTED, AGENT_THINKING, TOOL_EXECUTING)
    assert EVENT_TYPES[3:] == (TOOL_COMPLETED, AGENT_COMPLETED, AGENT_ERROR)


def test_json_round_trip_keeps_every_field() -> None:
    event = make(
        sequence=7,
        type=TOOL_COMPLETED,
        payload={"result": {"steps": [1, 2.5, "x", None, True]}, "nested": {"a": {"b": []}}},
        user_sequence=42,
    )
    text = event.to_json()
    assert RuntimeEvent.from_json(text) == event
    assert RuntimeEvent.from_json(text.encode()) == event
    data = json.loads(text)
    assert data["user_id"] == "alice"
    assert data["run_id"] == "run-1"
    assert data["sequence"] == 7
    assert data["user_sequence"] == 42
    assert data["type"] == TOOL_COMPLETED
    assert data["ts"] == 1_700_000_000.25


def test_to_json_never_fails_on_a_payload_json_cannot_hold() -> None:
    event = make(payload={"when": object(), "tags": {"b", "a"}, "pair": (1, 2)})
    data = json.loads(event.to_json())
    assert data["payload"]["tags"] == ["a", "b"]
    assert data["payload"]["pair"] == [1, 2]
    assert data["payload"]["when"].startswith("<object object")


def test_with_user_sequence_stamps_a_copy() -> None:
    event = make(sequence=3)
    stamped = event.with_user_sequence(9)
    assert stamped.user_sequence == 9
    assert event.user_sequence == 0
    assert stamped == make(sequence=3, user_sequence=9)


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("user_id", ""),
        ("user_id", "two words"),
        ("run_id", None),
        ("sequence", 0),
        ("sequence", True),
        ("sequence", 1.0),
        ("type", ""),
        ("type", "x" * 65),
        ("ts", math.nan),
        ("ts", "now"),
        ("payload", ["not", "a", "dict"]),
        ("user_sequence", -1),
    ],
)
def test_a_malformed_field_is_rejected_by_name(field_name: str, value: object) -> None:
    with pytest.raises(InvalidEventError) as caught:
        make(**{field_name: value})
    assert caught.value.field == field_name
    assert field_name in str(caught.value)


@pytest.mark.parametrize(
    ("text", "field_name"),
    [
        ("not json", "json"),
        ("[1, 2]", "event"),
        ('{"user_id": "a", "run_id": "r", "sequence": 1, "type": "t"}', "ts"),
        ('{"user_id": "a", "run_id": "r", "sequence": "1", "type": "t", "ts": 1}', "sequence"),
        ('{"user_id": "a b", "run_id": "r", "sequence": 1, "type": "t", "ts": 1}', "user_id"),
    ],
)
def test_from_json_rejects_malformed_input(text: str, field_name: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        RuntimeEvent.from_json(text)
    assert caught.value.field == field_name


def test_missing_payload_and_user_sequence_default() -> None:
    event = RuntimeEvent.from_json('{"user_id":"a","run_id":"r","sequence":1,"type":"t","ts":1}')
    assert event.payload == {}
    assert event.user_sequence == 0


def test_events_are_immutable() -> None:
    event = make()
    with pytest.raises(AttributeError):
        event.sequence = 2  # type: ignore[misc]
