"""`plan_many` on real executors: the holistic planner on generated portfolios in worker
processes, beside plugin planners that kill their worker or hang."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from planforge.batch import BatchInput, generated_inputs, plan_many
from planforge.factory import PlannerFactory
from tests.batch._plugins import hostile_factory


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlannerFactory]:
    made = hostile_factory(tmp_path_factory.mktemp("batch"))
    yield made
    made.close()


def _lines(results: list) -> list[str]:  # type: ignore[type-arg]
    return [r.line for r in sorted(results, key=lambda r: r.position)]


def test_process_workers_make_the_same_lines_as_planning_inline(factory: PlannerFactory) -> None:
    inline = list(plan_many(generated_inputs(12), executor="inline", factory=factory))
    inputs = generated_inputs(12)
    pooled = list(plan_many(inputs, executor="process", workers=2, chunk_size=3, factory=factory))
    assert all(r.ok for r in pooled), [r.line for r in pooled if not r.ok]
    assert _lines(pooled) == _lines(inline)
    record = pooled[0].record()
    assert record["planner"] == "holistic"
    assert record["plan"]["steps"]
    assert "created_at" not in record["plan"]


def test_a_bad_portfolio_fails_alone_naming_the_field(factory: PlannerFactory) -> None:
    inputs = list(generated_inputs(4))
    broken = dict(inputs[1].context or {})
    broken["cash"] = -5
    inputs[1] = inputs[1]._replace(context=broken)
    inputs.append(BatchInput(4, "nothing", None, problem="nothing.json: not valid JSON"))
    results = {r.id: r for r in plan_many(inputs, executor="inline", factory=factory)}
    assert [name for name, r in sorted(results.items()) if not r.ok] == ["nothing", "p000002"]
    error = results["p000002"].record()["error"]
    assert error["field"] == "cash"
    assert results["p000002"].record()["id"] == "p000002"
    assert results["nothing"].reason == "InvalidInput"


def test_a_worker_killed_by_one_input_fails_only_that_input(factory: PlannerFactory) -> None:
    inputs = [i._replace(planner=None) for i in generated_inputs(6)]
    inputs[2] = inputs[2]._replace(planner="crash")
    results = list(plan_many(inputs, executor="process", workers=2, chunk_size=6, factory=factory))
    failed = {r.id: r for r in results if not r.ok}
    assert list(failed) == ["p000003"], [r.line for r in failed.values()]
    assert failed["p000003"].reason == "WorkerLost"
    assert "exit code 9" in json.loads(failed["p000003"].line)["error"]["message"]
    assert len(results) == 6


def test_a_hanging_input_times_out_alone(factory: PlannerFactory) -> None:
    inputs = list(generated_inputs(3))
    inputs[0] = inputs[0]._replace(planner="hang")
    results = list(plan_many(inputs, executor="process", workers=1, timeout_s=1.0, factory=factory))
    assert sorted((r.id, r.ok) for r in results) == [
        ("p000001", False),
        ("p000002", True),
        ("p000003", True),
    ]


def test_bad_arguments_are_refused_before_anything_runs(factory: PlannerFactory) -> None:
    with pytest.raises(ValueError, match="unknown executor 'cluster'"):
        list(plan_many([{}], executor="cluster", factory=factory))
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        list(plan_many([{}], chunk_size=0, factory=factory))


def test_results_stream_with_a_bounded_number_in_flight(factory: PlannerFactory) -> None:
    """A million inputs are never read up front: the batch pulls them as chunks finish."""
    pulled = 0

    def endless() -> Iterator[BatchInput]:
        nonlocal pulled
        for item in generated_inputs(10**6):
            pulled += 1
            yield item

    stream = plan_many(endless(), executor="inline", chunk_size=2, factory=factory)
    first = next(stream)
    stream.close()
    assert first.ok
    assert pulled <= 4


def test_a_context_path_is_not_needed_on_workers(tmp_path: Path, factory: PlannerFactory) -> None:
    """A configuration reaches workers as text: a preset name or TOML, never a path."""
    results = list(
        plan_many(generated_inputs(2), executor="inline", config="conservative", factory=factory)
    )
    assert all(r.ok for r in results)
    digests = {r.record()["config_digest"] for r in results}
    assert len(digests) == 1
    assert "planner-default" not in digests


def test_an_executor_given_is_used_and_left_open(factory: PlannerFactory) -> None:
    from planforge.runtime._process_pool import ProcessExecutor

    pool = ProcessExecutor(factory.recipe(), workers=1)
    try:
        first = list(plan_many(generated_inputs(2), executor=pool, workers=1, factory=factory))
        pids = pool.worker_pids()
        again = list(plan_many(generated_inputs(2), executor=pool, workers=1, factory=factory))
        assert pool.worker_pids() == pids  # the same live worker served both batches
    finally:
        pool.close()
    assert [r.line for r in sorted(first)] == [r.line for r in sorted(again)]
    assert all(r.ok for r in first + again)
