"""Plan routes through the ASGI app: start a run, read it, list runs; owners and roles only."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planforge.configstore import ConfigStore
from planforge.factory import PlannerFactory
from planforge.runtime import InProcessEventBus
from planforge.server import create_app
from planforge.settings import load_settings

PLUGINS = {
    "srv_echo": """
        from planforge.contract import Planner, PlanStep

        class Echo(Planner):
            name = "echo"
            version = "1.0.0"
            capabilities = ("general",)
            keywords = ("echo", "repeat")
            tier = "stable"
            production_ready = True
            reliability_score = 0.8
            description = "repeats the objective n times"

            def plan(self, objective, context):
                steps = [PlanStep(id=str(i), action="say") for i in range(context.get("n", 1))]
                return self.new_plan(objective, steps, score=0.5)
    """,
    "srv_failing": """
        from planforge.contract import Planner

        class Failing(Planner):
            name = "failing"
            version = "1.0.0"
            capabilities = ("general",)
            keywords = ("explode",)
            tier = "stable"
            production_ready = True
            reliability_score = 0.8
            description = "always fails"

            def plan(self, objective, context):
                raise ValueError("no luck today")
    """,
    "srv_picky": """
        from planforge.contract import Planner
        from planforge.errors import InvalidContext

        class Picky(Planner):
            name = "picky"
            version = "1.0.0"
            capabilities = ("general",)
            keywords = ("fussy",)
            tier = "stable"
            production_ready = True
            reliability_score = 0.8
            description = "rejects a depth above 3 itself"

            def plan(self, objective, context):
                if context.get("depth", 0) > 3:
                    raise InvalidContext("depth", "must be at most 3")
                return self.new_plan(objective, [])
    """,
    "srv_gated": """
        import pathlib
        import time
        from planforge.contract import Planner

        class Gated(Planner):
            name = "gated"
            version = "1.0.0"
            capabilities = ("general",)
            keywords = ("wait",)
            tier = "stable"
            production_ready = True
            reliability_score = 0.8
            description = "plans once the test opens its gate"

            def plan(self, objective, context):
                gate = pathlib.Path(context["gate"])
                deadline = time.monotonic() + 20.0
                while not gate.exists() and time.monotonic() < deadline:
                    time.sleep(0.005)
                return self.new_plan(objective, [])
    """,
}


class Service:
    """A running app (lifespan entered) and the tokens of its users."""

    def __init__(self, client: TestClient, tokens: dict[str, str], bus: InProcessEventBus):
        self.client = client
        self.tokens = tokens
        self.bus = bus

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def start(self, user: str, **body: Any) -> str:
        response = self.client.post("/plans", json=body, headers=self.auth(user))
        assert response.status_code == 202, response.text
        run_id: str = response.json()["run_id"]
        return run_id

    def wait(self, user: str, run_id: str) -> dict[str, Any]:
        """The run once it has finished (bounded wait; not a timing assertion)."""
        deadline = time.monotonic() + 20.0
        while True:
            response = self.client.get(f"/plans/{run_id}", headers=self.auth(user))
            assert response.status_code == 200, response.text
            record: dict[str, Any] = response.json()
            if record["status"] not in ("queued", "running") or time.monotonic() > deadline:
                return record
            time.sleep(0.01)


def make_service(tmp_path: Path) -> Iterator[Service]:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    for module, source in PLUGINS.items():
        (plugin_dir / f"{module}.py").write_text(textwrap.dedent(source))
    settings = load_settings(plugin_dirs=(plugin_dir,), sandbox_timeout_s=10.0)
    bus = InProcessEventBus(buffer_size=100)
    try:
        with (
            PlannerFactory(
                settings,
                search_path=[str(tmp_path / "empty-site")],
                cache_dir=tmp_path / "cache",
                state_dir=tmp_path / "state",
            ) as factory,
            ConfigStore(f"sqlite:///{tmp_path / 'store.db'}") as store,
        ):
            tokens = {
                name: store.create_user(name, role)[1]
                for name, role in (
                    ("alice", "operator"),
                    ("bob", "operator"),
                    ("vera", "viewer"),
                    ("olga", "admin"),
                )
            }
            app = create_app(factory=factory, store=store, bus=bus)
            with TestClient(app) as client:
                yield Service(client, tokens, bus)
    finally:
        bus.close()
        for module in PLUGINS:
            sys.modules.pop(module, None)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    yield from make_service(tmp_path)


# ---------------------------------------------------------------------- running


def test_a_started_run_completes_and_its_plan_can_be_read(service: Service) -> None:
    response = service.client.post(
        "/plans",
        json={"objective": "echo this", "context": {"n": 3}, "planner": "echo"},
        headers=service.auth("alice"),
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running"
    record = service.wait("alice", body["run_id"])
    assert record["status"] == "completed"
    assert record["run_id"] == body["run_id"]
    assert record["user"] == "alice"
    assert record["objective"] == "echo this"
    assert record["planner"] == "echo"
    assert record["error"] is None
    assert record["finished_at"] >= record["created_at"]
    plan = record["plan"]
    assert plan["objective"] == "echo this"
    assert plan["planner"]["name"] == "echo"
    assert len(plan["steps"]) == 3


def test_run_by_objective_uses_factory_selection(service: Service) -> None:
    run_id = service.start("alice", objective="please echo and repeat")
    record = service.wait("alice", run_id)
    assert record["status"] == "completed"
    assert record["plan"]["planner"]["name"] == "echo"


def test_a_failing_planner_fails_the_run_with_its_error(service: Service) -> None:
    run_id = service.start("alice", objective="explode", planner="failing")
    record = service.wait("alice", run_id)
    assert record["status"] == "failed"
    assert record["plan"] is None
    assert record["error"]["error"] == "PlanExecutionError"
    assert "no luck today" in record["error"]["message"]


def test_a_context_the_planner_rejects_fails_the_run_as_an_input_error(
    service: Service,
) -> None:
    for _ in range(8):  # more than the breaker's minimum number of calls
        run_id = service.start("alice", objective="fussy", planner="picky", context={"depth": 9})
        record = service.wait("alice", run_id)
        assert record["status"] == "failed"
        assert record["error"]["error"] == "InvalidContext"
        assert record["error"]["input_error"] is True
        assert "depth: must be at most 3" in record["error"]["message"]
    picky = service.client.get("/planners/picky", headers=service.auth("alice")).json()
    assert picky["breaker"]["state"] == "closed"
    assert (picky["stats"]["invocations"], picky["stats"]["failures"]) == (0, 0)
    run_id = service.start("bob", objective="fussy", context={"depth": 1})
    assert service.wait("bob", run_id)["plan"]["planner"]["name"] == "picky"


def test_an_unknown_planner_fails_the_run_saying_so(service: Service) -> None:
    run_id = service.start("alice", objective="anything", planner="nope")
    record = service.wait("alice", run_id)
    assert record["status"] == "failed"
    assert record["error"]["error"] == "PlannerNotFound"


def test_a_run_over_its_timeout_fails_with_run_timeout(service: Service, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = service.start(
        "alice", objective="wait", planner="gated", context={"gate": str(gate)}, timeout_s=0.05
    )
    try:
        record = service.wait("alice", run_id)
    finally:
        gate.touch()
    assert record["status"] == "failed"
    assert record["error"]["error"] == "RunTimeout"


def test_runs_are_listed_newest_first_without_their_plans(service: Service) -> None:
    first = service.start("alice", objective="echo one", planner="echo")
    service.wait("alice", first)
    second = service.start("alice", objective="echo two", planner="echo")
    service.wait("alice", second)
    response = service.client.get("/plans", headers=service.auth("alice"))
    assert response.status_code == 200
    runs = response.json()["runs"]
    assert [run["run_id"] for run in runs] == [second, first]
    assert all("plan" not in run for run in runs)
    assert [run["status"] for run in runs] == ["completed", "completed"]


# ---------------------------------------------------------------------- isolation and roles


def test_another_user_cannot_read_or_list_a_run(service: Service) -> None:
    run_id = service.start("alice", objective="echo secret", planner="echo")
    service.wait("alice", run_id)
    response = service.client.get(f"/plans/{run_id}", headers=service.auth("bob"))
    assert response.status_code == 404
    assert response.json()["error"] == "RunNotFound"
    assert "secret" not in response.text
    assert service.client.get("/plans", headers=service.auth("bob")).json() == {"runs": []}
    # a viewer reads only their own runs too
    assert service.client.get(f"/plans/{run_id}", headers=service.auth("vera")).status_code == 404


def test_an_unknown_run_is_404(service: Service) -> None:
    response = service.client.get("/plans/0000", headers=service.auth("alice"))
    assert response.status_code == 404
    assert response.json()["error"] == "RunNotFound"


def test_a_viewer_cannot_start_runs_but_can_list(service: Service) -> None:
    response = service.client.post(
        "/plans", json={"objective": "echo"}, headers=service.auth("vera")
    )
    assert response.status_code == 403
    assert response.json()["error"] == "PermissionDenied"
    assert service.client.get("/plans", headers=service.auth("vera")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/plans"), ("get", "/plans"), ("get", "/plans/abc")]
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pf_wrong"}])
def test_every_plan_route_needs_a_valid_token(
    service: Service, method: str, path: str, headers: dict[str, str]
) -> None:
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "post":
        kwargs["json"] = {"objective": "echo"}
    response = getattr(service.client, method)(path, **kwargs)
    assert response.status_code == 401
    assert response.json()["error"] == "AuthenticationError"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"objective": ""},
        {"objective": "x", "context": []},
        {"objective": "x", "timeout_s": 0},
        {"objective": "x", "surprise": 1},
    ],
)
def test_a_malformed_request_is_422_and_starts_nothing(
    service: Service, body: dict[str, Any]
) -> None:
    response = service.client.post("/plans", json=body, headers=service.auth("alice"))
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidRequest"
    assert service.client.get("/plans", headers=service.auth("alice")).json() == {"runs": []}


def test_runs_over_the_per_user_limit_are_refused_with_429(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANFORGE_MAX_RUNS_PER_USER", "1")
    for service in make_service(tmp_path):
        gate = tmp_path / "gate"
        running = service.start(
            "alice", objective="wait", planner="gated", context={"gate": str(gate)}
        )
        try:
            refused = service.client.post(
                "/plans",
                json={"objective": "echo", "planner": "echo"},
                headers=service.auth("alice"),
            )
            assert refused.status_code == 429
            assert refused.json()["error"] == "RunLimitExceeded"
            # the limit is per user: bob is not affected
            other = service.start("bob", objective="echo", planner="echo")
            assert service.wait("bob", other)["status"] == "completed"
        finally:
            gate.touch()
        assert service.wait("alice", running)["status"] == "completed"
        # the finished run released its slot
        again = service.start("alice", objective="echo", planner="echo")
        assert service.wait("alice", again)["status"] == "completed"
        listed = service.client.get("/plans", headers=service.auth("alice")).json()["runs"]
        assert [run["run_id"] for run in listed] == [again, running]


# ---------------------------------------------------------------------- cancelling


def test_an_owner_cancels_a_running_run_and_it_ends_cancelled(
    service: Service, tmp_path: Path
) -> None:
    gate = tmp_path / "never-opened"
    run_id = service.start(
        "alice", objective="wait", planner="gated", context={"gate": str(gate)}, timeout_s=30
    )
    assert service.client.delete(f"/plans/{run_id}", headers=service.auth("bob")).status_code == 404
    assert (
        service.client.delete(f"/plans/{run_id}", headers=service.auth("vera")).status_code == 403
    )
    response = service.client.delete(f"/plans/{run_id}", headers=service.auth("alice"))
    assert response.status_code == 200, response.text
    record = service.wait("alice", run_id)
    assert record["status"] == "cancelled"
    assert record["error"]["error"] == "RunCancelled"
    again = service.client.delete(f"/plans/{run_id}", headers=service.auth("alice"))
    assert again.status_code == 409
    assert again.json()["error"] == "RunFinished"


def test_listing_filters_by_status_and_bucket(service: Service) -> None:
    done = service.start("alice", objective="echo", planner="echo", context={})
    assert service.wait("alice", done)["status"] == "completed"
    listed = service.client.get("/plans?status=completed", headers=service.auth("alice")).json()
    assert [run["run_id"] for run in listed["runs"]] == [done]
    assert service.client.get("/plans?status=failed", headers=service.auth("alice")).json() == {
        "runs": []
    }
    assert service.client.get("/plans?bucket=none", headers=service.auth("alice")).json() == {
        "runs": []
    }
    bad = service.client.get("/plans?status=lost", headers=service.auth("alice"))
    assert bad.status_code == 422


def test_an_admin_lists_and_cancels_another_users_runs(service: Service, tmp_path: Path) -> None:
    done = service.start("alice", objective="echo", planner="echo", context={})
    service.wait("alice", done)
    listed = service.client.get("/plans?of=alice", headers=service.auth("olga")).json()["runs"]
    assert [run["run_id"] for run in listed] == [done]
    assert service.client.get("/plans?of=alice", headers=service.auth("bob")).status_code == 403
    gate = tmp_path / "never-opened"
    running = service.start(
        "alice", objective="wait", planner="gated", context={"gate": str(gate)}, timeout_s=30
    )
    response = service.client.delete(f"/plans/{running}", headers=service.auth("olga"))
    assert response.status_code == 200, response.text
    assert service.wait("alice", running)["status"] == "cancelled"
