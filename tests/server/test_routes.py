"""Planner and configuration routes: happy paths and the errors users see, through ASGI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planforge.portfolio.planner import preset_text
from tests.server.test_auth import Service, assert_error_json, running_service

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("routes")) as running:
        yield running


@pytest.fixture(scope="module")
def base_toml() -> str:
    return preset_text("default")


def variant(base: str, number: int) -> str:
    changed = base.replace("max_sequences = 20000", f"max_sequences = {10_000 + number}")
    assert changed != base
    return changed


def small_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(EXAMPLE.read_text())
    context["positions"] = context["positions"][:3]
    return context


def create(service: Service, name: str, toml: str, **extra: Any) -> dict[str, Any]:
    response = service.client.post(
        "/configs",
        json={"name": name, "title": f"{name} title", "toml": toml, **extra},
        headers=service.auth("admin"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- planners -----------------------------------------------------------------------------


def test_planners_list_describe_and_select(service: Service) -> None:
    viewer = service.auth("viewer")
    listed = service.client.get("/planners", headers=viewer).json()
    names = [item["name"] for item in listed]
    assert names == ["holistic"]
    assert listed[0]["status"]
    described = service.client.get("/planners/holistic", headers=viewer).json()
    assert described["name"] == "holistic"
    assert described["quarantine"] is None
    selection = service.client.post(
        "/planners/select",
        json={"objective": "rebalance my portfolio", "capabilities": []},
        headers=viewer,
    )
    assert selection.status_code == 200, selection.text
    assert "holistic" in json.dumps(selection.json())


def test_unknown_planner_is_404_json(service: Service) -> None:
    response = service.client.get("/planners/nope", headers=service.auth("viewer"))
    assert_error_json(response, 404, "PlannerNotFound")


def test_select_rejects_unknown_fields(service: Service) -> None:
    response = service.client.post(
        "/planners/select",
        json={"objective": "x", "surprise": 1},
        headers=service.auth("viewer"),
    )
    assert_error_json(response, 422, "InvalidRequest")


def test_diagnostics(service: Service) -> None:
    response = service.client.get("/diagnostics", headers=service.auth("viewer"))
    assert response.status_code == 200
    assert isinstance(response.json(), dict)


# -- configurations -----------------------------------------------------------------------


def test_versions_history_show_and_compare_and_swap(service: Service, base_toml: str) -> None:
    first = create(service, "alpha", base_toml, expected_version=0)
    assert first["created"] is True
    assert first["config"]["version"] == 1
    assert first["config"]["created_by"] == "admin-user"
    second = create(service, "alpha", variant(base_toml, 1), expected_version=1)
    assert second["config"]["version"] == 2
    same = create(service, "alpha", variant(base_toml, 1))
    assert same["created"] is False
    stale = service.client.post(
        "/configs",
        json={"name": "alpha", "title": "t", "toml": variant(base_toml, 2), "expected_version": 1},
        headers=service.auth("admin"),
    )
    assert_error_json(stale, 409, "VersionConflict")
    history = service.client.get("/configs/alpha/history", headers=service.auth("viewer")).json()
    assert [item["version"] for item in history] == [1, 2]
    shown = service.client.get(f"/configs/{first['config']['id']}", headers=service.auth("viewer"))
    assert shown.json()["toml"] == base_toml


def test_invalid_configuration_is_400_with_the_key(service: Service) -> None:
    response = service.client.post(
        "/configs",
        json={"name": "bad", "title": "t", "toml": "[planner]\nmax_sequences = 'many'\n"},
        headers=service.auth("admin"),
    )
    assert_error_json(response, 400, "InvalidConfig")
    missing = service.client.get("/configs/999999", headers=service.auth("viewer"))
    assert_error_json(missing, 404, "ConfigNotFound")


def test_diff_unified_and_semantic(service: Service, base_toml: str) -> None:
    a = create(service, "delta", base_toml)["config"]["id"]
    b = create(service, "delta", variant(base_toml, 7))["config"]["id"]
    viewer = service.auth("viewer")
    unified = service.client.get(f"/configs/{a}/diff/{b}", headers=viewer).json()
    assert "max_sequences = 10007" in unified["unified"]
    assert unified["a"].startswith("delta v1")
    semantic = service.client.get(f"/configs/{a}/diff/{b}?semantic=true", headers=viewer).json()
    assert "10007" in json.dumps(semantic["semantic"])


def test_export_import_and_clone(service: Service, base_toml: str) -> None:
    source = create(service, "gamma", base_toml, description="for export")["config"]
    exported = service.client.get(f"/configs/{source['id']}/export", headers=service.auth("viewer"))
    assert exported.status_code == 200
    assert 'filename="gamma-v1.toml"' in exported.headers["content-disposition"]
    imported = service.client.post(
        "/configs/import",
        files={"file": ("gamma.toml", exported.content, "application/toml")},
        data={"name": "gamma-copy"},
        headers=service.auth("admin"),
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["config"]["digest"] == source["digest"]
    assert imported.json()["config"]["title"] == source["title"]
    clone = service.client.post(
        f"/configs/{source['id']}/clone",
        json={"name": "gamma-clone", "title": "Clone"},
        headers=service.auth("admin"),
    )
    assert clone.status_code == 201, clone.text
    assert clone.json()["config"]["digest"] == source["digest"]


def test_import_refuses_a_headerless_file_without_a_name(service: Service, base_toml: str) -> None:
    response = service.client.post(
        "/configs/import",
        files={"file": ("plain.toml", base_toml.encode(), "application/toml")},
        headers=service.auth("admin"),
    )
    assert_error_json(response, 400, "ExportFormatError")
    binary = service.client.post(
        "/configs/import",
        files={"file": ("x.toml", b"\xff\xfe\x00bad", "application/toml")},
        data={"name": "x", "title": "x"},
        headers=service.auth("admin"),
    )
    assert_error_json(binary, 400, "ConfigError")


# -- buckets ------------------------------------------------------------------------------


def test_bucket_assign_current_history_rollback_and_health(
    service: Service, base_toml: str
) -> None:
    admin, viewer = service.auth("admin"), service.auth("viewer")
    v1 = create(service, "beta", base_toml)["config"]
    v2 = create(service, "beta", variant(base_toml, 3))["config"]
    for config in (v1, v2):
        response = service.client.post(
            "/buckets/prod/assign", json={"config_id": config["id"], "reason": "go"}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert response.json()["assigned_by"] == "admin-user"
    current = service.client.get("/buckets/prod/config", headers=viewer).json()
    assert current["id"] == v2["id"]
    back = service.client.post(
        "/buckets/prod/rollback",
        json={"name": "beta", "version": 1, "reason": "regression"},
        headers=admin,
    )
    assert back.status_code == 200, back.text
    history = service.client.get("/buckets/prod/history", headers=viewer).json()
    assert [entry["config_id"] for entry in history] == [v1["id"], v2["id"], v1["id"]]
    assert history[-1]["reason"].endswith("regression")
    health = service.client.get("/planner/health/prod", headers=viewer)
    assert health.status_code == 200, health.text
    assert health.json()["healthy"] is True
    assert health.json()["config_valid"] is True
    assert health.json()["modules_loaded"]


def test_unknown_bucket_is_404(service: Service) -> None:
    viewer = service.auth("viewer")
    assert_error_json(
        service.client.get("/buckets/none/config", headers=viewer), 404, "BucketNotFound"
    )
    assert_error_json(
        service.client.get("/planner/health/none", headers=viewer), 404, "BucketNotFound"
    )
    assert service.client.get("/buckets/none/history", headers=viewer).json() == []


# -- presets, dry run, A/B ----------------------------------------------------------------


def test_presets_list_get_create_rate(service: Service, base_toml: str) -> None:
    viewer, admin = service.auth("viewer"), service.auth("admin")
    shipped = service.client.get("/presets?tag=shipped", headers=viewer).json()
    assert [item["name"] for item in shipped] == ["aggressive", "conservative", "default"]
    assert "toml" not in shipped[0]
    one = service.client.get("/presets/default", headers=viewer).json()
    assert one["toml"] == base_toml
    made = service.client.post(
        "/presets",
        json={"name": "mine", "description": "d", "toml": base_toml, "tags": ["Team"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["author"] == "admin-user"
    assert made.json()["tags"] == ["team"]
    again = service.client.post("/presets", json={"name": "mine", "toml": base_toml}, headers=admin)
    assert_error_json(again, 409, "PresetExists")
    rated = service.client.post(
        f"/presets/{made.json()['id']}/rate", json={"rating": 4}, headers=admin
    )
    assert rated.json()["rating"] == 4.0
    bad = service.client.post("/presets/mine/rate", json={"rating": 9}, headers=admin)
    assert_error_json(bad, 422, "InvalidRequest")
    assert_error_json(service.client.get("/presets/none", headers=viewer), 404, "PresetNotFound")


def test_dry_run(service: Service, base_toml: str) -> None:
    viewer = service.auth("viewer")
    report = service.client.post("/configs/dry-run", json={"toml": base_toml}, headers=viewer)
    assert report.status_code == 200, report.text
    assert report.json()["valid"] is True
    assert report.json()["modules_loaded"]
    bad = service.client.post(
        "/configs/dry-run", json={"toml": "[planner]\nnope = 1\n"}, headers=viewer
    )
    assert_error_json(bad, 400, "ConfigError")


def test_abtest_compares_two_configurations(service: Service) -> None:
    response = service.client.post(
        "/abtest",
        json={"config_a": "default", "config_b": "conservative", "context": small_context()},
        headers=service.auth("operator"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["winner"] in {"a", "b", "tie"}
    path_like = service.client.post(
        "/abtest",
        json={"config_a": "/etc/passwd.toml", "config_b": "default", "context": {}},
        headers=service.auth("operator"),
    )
    assert_error_json(path_like, 400, "ConfigError")
