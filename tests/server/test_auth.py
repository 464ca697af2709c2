"""API tokens: who may call what; every route refuses a missing, wrong or too-weak token, and
a WebSocket authenticates by header or, as browsers must, by subprotocol."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from planforge.configstore import ConfigStore
from planforge.factory import PlannerFactory
from planforge.portfolio.planner import HolisticPortfolioPlanner
from planforge.runtime import InProcessEventBus
from planforge.server import create_app
from planforge.server._auth import WS_PROTOCOL, WS_TOKEN_PROTOCOL_PREFIX, bearer_token
from planforge.server._routes import configs, ops, planners
from planforge.settings import load_settings
from tests.server._served import Served, http, served_planforge
from tests.server.test_plans import PLUGINS

OPEN_ROUTES = {"/livez", "/readyz", "/metrics"}
ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}


@dataclass
class Service:
    """A running app (lifespan entered) with one token per role."""

    app: FastAPI
    client: TestClient
    store: ConfigStore
    factory: PlannerFactory
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def build_factory(tmp_path: Path, *, with_planner: bool = True) -> PlannerFactory:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    factory = PlannerFactory(
        load_settings(plugin_dirs=(plugins,), sandbox_timeout_s=10.0),
        search_path=[str(tmp_path / "empty-site")],
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
    )
    if with_planner:
        factory.register(HolisticPortfolioPlanner)
    return factory


@contextlib.contextmanager
def running_service(tmp_path: Path, *, with_planner: bool = True) -> Iterator[Service]:
    """The app on a tmp SQLite store and a factory holding the portfolio planner."""
    store = ConfigStore(f"sqlite:///{tmp_path / 'store.db'}")
    factory = build_factory(tmp_path, with_planner=with_planner)
    bus = InProcessEventBus()
    tokens = {role: store.create_user(f"{role}-user", role)[1] for role in ROLE_RANK}
    app = create_app(factory=factory, store=store, bus=bus)
    ops.install(app, max_body_bytes=64 * 1024)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Service(app, client, store, factory, tokens)
    finally:
        bus.close()
        factory.close()
        store.close()


ALICE = "alice"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("auth")) as running:
        yield running


def my_routes() -> list[APIRoute]:
    """The routes of the routers this suite covers (plans and events have their own)."""
    return [
        route
        for module in (ops, planners, configs)
        for route in module.router.routes
        if isinstance(route, APIRoute)
    ]


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route needing a token, path parameters filled in."""
    found: list[tuple[str, str]] = []
    for route in my_routes():
        if not isinstance(route, APIRoute) or route.path in OPEN_ROUTES:
            continue
        path = route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", "1")
        for method in sorted(route.methods or ()):
            found.append((method, path))
    return sorted(found)


def needed_role(app: FastAPI, method: str, path: str) -> str:
    """The least role a route accepts, read from its dependencies."""
    from planforge.server import _auth as auth

    for route in my_routes():
        if method not in (route.methods or ()):
            continue
        if route.path_regex.match(path) is None:
            continue
        calls = {dependency.call for dependency in route.dependant.dependencies}
        for role in ("admin", "operator", "viewer"):
            if getattr(auth, role) in calls:
                return role
    raise AssertionError(f"{method} {path} has no auth dependency")


def assert_error_json(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert "Traceback" not in body["message"]
    assert set(body) >= {"error", "message"}


# -- store --------------------------------------------------------------------------------


def test_tokens_are_unique_and_only_their_hash_is_stored(tmp_path: Path) -> None:
    with ConfigStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        user, token = store.create_user("ann", "operator")
        _, other = store.create_user("bob", "viewer")
        assert token != other
        assert token.startswith("pf_")
        assert store.user_for_token(token) == user
        assert (tmp_path / "s.db").read_bytes().find(token.encode()) == -1


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None
    assert bearer_token("Bearer " + "x" * 600) is None


# -- every route --------------------------------------------------------------------------


def test_every_protected_route_refuses_a_missing_or_wrong_token(service: Service) -> None:
    routes = protected_routes(service.app)
    assert len(routes) >= 4
    for method, path in routes:
        missing = service.client.request(method, path)
        assert_error_json(missing, 401, "AuthenticationError")
        wrong = service.client.request(
            method, path, headers={"Authorization": "Bearer pf_not-a-real-token"}
        )
        assert_error_json(wrong, 401, "AuthenticationError")
        scheme = service.client.request(
            method, path, headers={"Authorization": f"Basic {service.tokens['admin']}"}
        )
        assert_error_json(scheme, 401, "AuthenticationError")


def test_every_route_refuses_a_role_below_its_own(service: Service) -> None:
    checked = 0
    for method, path in protected_routes(service.app):
        needed = needed_role(service.app, method, path)
        for role, rank in ROLE_RANK.items():
            if rank >= ROLE_RANK[needed]:
                continue
            response = service.client.request(method, path, headers=service.auth(role))
            assert_error_json(response, 403, "PermissionDenied")
            assert needed in response.json()["message"]
            checked += 1
    assert checked >= 1


def test_open_routes_need_no_token(service: Service) -> None:
    for path in sorted(OPEN_ROUTES):
        assert service.client.get(path).status_code == 200, path


def test_higher_roles_pass_a_viewer_route(service: Service) -> None:
    for role in ROLE_RANK:
        assert service.client.get("/planners", headers=service.auth(role)).status_code == 200


# -- WebSocket authentication, on a real `planforge serve` -----------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_planforge(
        tmp_path_factory.mktemp("served-auth"),
        users={ALICE: "operator"},
        plugins={"srv_echo": PLUGINS["srv_echo"]},
    ) as running:
        yield running


def protocols(*names: str) -> list[Subprotocol]:
    return [Subprotocol(name) for name in names]


def close_code(events: ClientConnection) -> int:
    """The code the server closes the socket with (it sends nothing before)."""
    with pytest.raises(ConnectionClosed) as closed:
        events.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def assert_streams_alices_run(served: Served, events: ClientConnection) -> None:
    """A run started over HTTP reaches the socket: it is open and authenticated as alice."""
    status, body = http(
        "POST",
        f"{served.base}/plans",
        served.tokens[ALICE],
        {"objective": "echo", "planner": "echo", "context": {"n": 1}},
    )
    assert status == 202, body
    received = [json.loads(events.recv(timeout=20))]
    while (received[-1]["run_id"], received[-1]["type"]) != (body["run_id"], "agent_completed"):
        assert received[-1]["type"] != "agent_error", received
        received.append(json.loads(events.recv(timeout=20)))
    assert {event["user_id"] for event in received} == {"alice"}


def test_a_browser_authenticates_a_websocket_by_subprotocol_and_the_token_is_not_echoed(
    served: Served,
) -> None:
    offered = protocols(WS_PROTOCOL, f"{WS_TOKEN_PROTOCOL_PREFIX}{served.tokens['alice']}")
    with connect(f"{served.ws}/ws/events", subprotocols=offered) as events:
        assert events.subprotocol == "planforge.v1"
        assert events.response is not None
        handshake = events.response.headers
        assert handshake.get_all("Sec-WebSocket-Protocol") == ["planforge.v1"]
        assert served.tokens[ALICE] not in str(handshake)
        assert_streams_alices_run(served, events)


def test_a_wrong_or_misoffered_subprotocol_token_closes_with_4401(served: Served) -> None:
    wrong = protocols(WS_PROTOCOL, f"{WS_TOKEN_PROTOCOL_PREFIX}pf_wrong")
    with connect(f"{served.ws}/ws/events", subprotocols=wrong) as events:
        assert events.subprotocol == "planforge.v1"
        assert close_code(events) == 4401
    # the token protocol alone: the server could only accept with the token, so it refuses
    alone = protocols(f"{WS_TOKEN_PROTOCOL_PREFIX}{served.tokens['alice']}")
    with connect(f"{served.ws}/ws/events", subprotocols=alone) as events:
        assert events.subprotocol is None
        assert close_code(events) == 4401
    with connect(f"{served.ws}/ws/events") as events:
        assert close_code(events) == 4401


def test_the_query_token_still_works_for_existing_clients(served: Served) -> None:
    with connect(f"{served.ws}/ws/events?token={served.tokens['alice']}") as events:
        assert events.subprotocol is None
        assert_streams_alices_run(served, events)
