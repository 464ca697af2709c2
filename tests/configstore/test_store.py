"""The configuration store's behaviour, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text

from planforge.configstore import (
    MAX_DOCUMENT_BYTES,
    BucketNotFound,
    ConfigChange,
    ConfigNotFound,
    ConfigStore,
    DocumentTooLarge,
    InvalidConfig,
    InvalidInput,
    PresetExists,
    PresetNotFound,
    StoreError,
    VersionConflict,
)
from planforge.configstore._db import (
    ENV_DATABASE_URL,
    ENV_HOME,
    create_store_engine,
    normalise_url,
    resolve_url,
)
from planforge.configstore._models import Base
from planforge.errors import PlannerError
from planforge.portfolio.planner import preset_text
from tests.configstore.conftest import is_postgres, variant


def _aware_utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


# -- versions ----------------------------------------------------------------------------------


def test_the_first_version_is_1_active_and_digested(store: ConfigStore, base_toml: str) -> None:
    before = datetime.now(UTC)
    result = store.create_new_version("core", "Core", base_toml, "first cut", created_by="ana")
    config = result.config
    assert result.created
    assert (config.name, config.title, config.description) == ("core", "Core", "first cut")
    assert (config.version, config.active, config.parent_id, config.created_by) == (
        1,
        True,
        None,
        "ana",
    )
    assert config.toml == base_toml
    assert config.digest == hashlib.sha256(base_toml.encode()).hexdigest()
    assert _aware_utc(config.created_at)
    assert before - timedelta(seconds=1) <= config.created_at <= datetime.now(UTC)
    assert store.get_config_by_id(config.id) == config


def test_a_new_version_becomes_the_only_active_one_and_records_its_parent(
    store: ConfigStore, base_toml: str
) -> None:
    first = store.create_new_version("core", "Core", base_toml).config
    second = store.create_new_version("core", "Core v2", variant(base_toml, 2)).config
    store.create_new_version("satellite", "Sat", base_toml)

    assert (second.version, second.parent_id) == (2, first.id)
    assert store.get_active("core") == second
    assert store.get_config_by_id(first.id).active is False
    history = store.get_version_history("core")
    assert [(c.version, c.active) for c in history] == [(1, False), (2, True)]
    assert all(_aware_utc(c.created_at) for c in history)
    assert [(c.name, c.version) for c in store.list_configs()] == [("core", 2), ("satellite", 1)]
    assert store.get_version("core", 1).id == first.id
    assert store.get_version_history("nobody") == []


def test_content_equal_to_the_active_version_is_reported_not_duplicated(
    store: ConfigStore, base_toml: str
) -> None:
    first = store.create_new_version("core", "Core", base_toml).config
    before = store.count_rows()
    again = store.create_new_version("core", "Another title", base_toml, created_by="bo")
    assert not again.created
    assert again.config == first
    assert store.count_rows() == before
    # equal to an older, inactive version is a real change back, so it is stored
    store.create_new_version("core", "Core", variant(base_toml, 1))
    back = store.create_new_version("core", "Core", base_toml)
    assert back.created
    assert back.config.version == 3


def test_expected_version_is_compare_and_swap(store: ConfigStore, base_toml: str) -> None:
    store.create_new_version("core", "Core", base_toml, expected_version=0)
    store.create_new_version("core", "Core", variant(base_toml, 1), expected_version=1)
    before = store.count_rows()
    with pytest.raises(VersionConflict) as caught:
        store.create_new_version("core", "Core", variant(base_toml, 2), expected_version=1)
    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert "current version is v2" in str(caught.value)
    assert store.count_rows() == before
    with pytest.raises(VersionConflict, match="current version is none"):
        store.create_new_version("fresh", "Fresh", base_toml, expected_version=3)
    assert store.count_rows() == before
    assert store.create_new_version("core", "C", variant(base_toml, 2), expected_version=2).created


REJECTED = [
    pytest.param("[planner\nmax_depth = 3\n", None, id="bad-toml"),
    pytest.param("[filters.nonexistent]\nenabled = true\n", "filters.nonexistent", id="unknown"),
    pytest.param("[planner]\nmax_depth = 'five'\n", "planner.max_depth", id="wrong-type"),
    pytest.param("[bogus]\nx = 1\n", "bogus", id="unknown-table"),
    pytest.param("  \n\n", None, id="empty"),
]


@pytest.mark.parametrize(("document", "key"), REJECTED)
def test_an_invalid_document_is_rejected_naming_the_key_and_nothing_is_stored(
    store: ConfigStore, base_toml: str, document: str, key: str | None
) -> None:
    store.create_new_version("core", "Core", base_toml)
    before = store.count_rows()
    with pytest.raises(InvalidConfig) as caught:
        store.create_new_version("core", "Core", document)
    assert caught.value.key == key
    if key is not None:
        assert key in str(caught.value)
    assert "Nothing was stored" in str(caught.value)
    assert store.count_rows() == before
    assert store.get_active("core").version == 1


def test_an_oversized_document_is_rejected_before_parsing(
    store: ConfigStore, base_toml: str
) -> None:
    before = store.count_rows()
    padding = "#" * (MAX_DOCUMENT_BYTES + 1) + "\n"
    with pytest.raises(DocumentTooLarge) as caught:
        store.create_new_version("core", "Core", base_toml + padding)
    assert caught.value.limit == MAX_DOCUMENT_BYTES
    assert caught.value.size > MAX_DOCUMENT_BYTES
    assert store.count_rows() == before
    with pytest.raises(ConfigNotFound):
        store.get_active("core")


@pytest.mark.parametrize(
    ("name", "title"),
    [("", "T"), ("  core", "T"), ("co\nre", "T"), ("x" * 201, "T"), ("core", "   ")],
)
def test_bad_names_and_titles_are_clear_errors(
    store: ConfigStore, base_toml: str, name: str, title: str
) -> None:
    with pytest.raises(InvalidInput, match="is not valid"):
        store.create_new_version(name, title, base_toml)
    assert store.list_configs() == []


def test_missing_configurations_are_not_found_errors(store: ConfigStore) -> None:
    with pytest.raises(ConfigNotFound, match="configuration id 999"):
        store.get_config_by_id(999)
    with pytest.raises(ConfigNotFound, match="'core' version 3"):
        store.get_version("core", 3)
    with pytest.raises(ConfigNotFound, match="'core'"):
        store.get_active("core")


# -- buckets -----------------------------------------------------------------------------------


def test_assign_then_read_the_bucket_configuration(store: ConfigStore, base_toml: str) -> None:
    config = store.create_new_version("core", "Core", base_toml).config
    assignment = store.assign_config_to_bucket("core-bucket", config.id, "ana", "go live")
    assert (assignment.bucket, assignment.config_id, assignment.config_name) == (
        "core-bucket",
        config.id,
        "core",
    )
    assert (assignment.config_version, assignment.assigned_by, assignment.reason) == (
        1,
        "ana",
        "go live",
    )
    assert _aware_utc(assignment.assigned_at)
    assert store.get_bucket_config("core-bucket") == config
    # a newer version of the name does not move the bucket: buckets point at a version
    store.create_new_version("core", "Core", variant(base_toml, 1))
    still = store.get_bucket_config("core-bucket")
    assert (still.id, still.digest, still.active) == (config.id, config.digest, False)
    assert store.bucket_history("core-bucket") == [assignment]


def test_unknown_buckets_and_configs(store: ConfigStore, base_toml: str) -> None:
    with pytest.raises(BucketNotFound, match="bucket assign nowhere"):
        store.get_bucket_config("nowhere")
    assert store.bucket_history("nowhere") == []
    before = store.count_rows()
    with pytest.raises(ConfigNotFound):
        store.assign_config_to_bucket("core", 12345)
    assert store.count_rows() == before


def test_rollback_is_a_new_assignment_and_history_keeps_both(
    store: ConfigStore, base_toml: str
) -> None:
    v1 = store.create_new_version("core", "Core", base_toml).config
    v2 = store.create_new_version("core", "Core", variant(base_toml, 2)).config
    first = store.assign_config_to_bucket("core", v2.id, "ana")
    back = store.rollback_to_version("core", "core", 1, "bo", "bad fills")

    assert back.reason == "rollback to core v1: bad fills"
    assert (back.config_id, back.assigned_by) == (v1.id, "bo")
    assert store.get_bucket_config("core").id == v1.id
    assert store.bucket_history("core") == [first, back]
    assert store.audit_log(limit=1)[0].action == "bucket.rollback"
    assert store.rollback_to_version("core", "core", 2).reason == "rollback to core v2"


def test_a_rollback_to_nothing_changes_nothing(store: ConfigStore, base_toml: str) -> None:
    config = store.create_new_version("core", "Core", base_toml).config
    with pytest.raises(BucketNotFound):
        store.rollback_to_version("core", "core", 1)
    store.assign_config_to_bucket("core", config.id)
    before = store.count_rows()
    with pytest.raises(ConfigNotFound, match="'core' version 7"):
        store.rollback_to_version("core", "core", 7)
    assert store.count_rows() == before


def test_bucket_at_answers_what_ran_when_and_who_changed_it(
    store: ConfigStore, base_toml: str
) -> None:
    v1 = store.create_new_version("core", "Core", base_toml).config
    v2 = store.create_new_version("core", "Core", variant(base_toml, 2)).config
    before_any = datetime.now(UTC) - timedelta(seconds=1)
    first = store.assign_config_to_bucket("core", v1.id, "ana")
    time.sleep(0.002)
    between = datetime.now(UTC)
    time.sleep(0.002)
    second = store.assign_config_to_bucket("core", v2.id, "bo", "tuned")

    assert store.bucket_at("core", before_any) is None
    assert store.bucket_at("core", between) == first
    later = store.bucket_at("core", datetime.now(UTC) + timedelta(days=1))
    assert later == second
    assert later is not None
    assert (later.assigned_by, later.reason, later.config_version) == ("bo", "tuned", 2)
    # another zone, same instant
    in_tokyo = between.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert store.bucket_at("core", in_tokyo) == first
    with pytest.raises(InvalidInput, match="aware"):
        store.bucket_at("core", datetime(2024, 1, 1))


def test_list_buckets_is_sorted_and_distinct(store: ConfigStore, base_toml: str) -> None:
    config = store.create_new_version("core", "Core", base_toml).config
    for bucket in ("satellite", "core", "satellite"):
        store.assign_config_to_bucket(bucket, config.id)
    assert store.list_buckets() == ["core", "satellite"]


def test_reading_a_bucket_is_one_query(store: ConfigStore, base_toml: str) -> None:
    config = store.create_new_version("core", "Core", base_toml).config
    store.assign_config_to_bucket("core", config.id)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        store.get_bucket_config("core")
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1


# -- presets -----------------------------------------------------------------------------------


def test_shipped_presets_are_seeded_once(store_url: str) -> None:
    with ConfigStore(store_url) as first:
        presets = first.list_presets()
        assert [p.name for p in presets] == ["aggressive", "conservative", "default"]
        assert all(p.author == "planforge" and "shipped" in p.tags for p in presets)
        assert presets[2].toml == preset_text("default")
        assert all(p.description and _aware_utc(p.created_at) for p in presets)
    with ConfigStore(store_url) as second:
        second.migrate()
        assert [p.id for p in second.list_presets()] == [p.id for p in presets]


def test_get_counts_downloads_and_finds_by_id_or_name(store: ConfigStore) -> None:
    default = store.get_preset("default")
    assert default.downloads == 1
    assert store.get_preset(default.id).downloads == 2
    assert store.get_preset(str(default.id)).downloads == 3
    assert store.get_preset("default", count_download=False).downloads == 3
    with pytest.raises(PresetNotFound, match="preset list"):
        store.get_preset("nope")
    with pytest.raises(PresetNotFound):
        store.get_preset(999)


def test_create_filter_and_rate_presets(store: ConfigStore, base_toml: str) -> None:
    made = store.create_preset("mine", "my tweak", variant(base_toml, 5), "ana", ["Team", "team"])
    assert (made.name, made.author, made.tags, made.downloads) == ("mine", "ana", ("team",), 0)
    assert (made.rating, made.ratings) == (None, 0)
    assert [p.name for p in store.list_presets(tag="team")] == ["mine"]
    assert [p.name for p in store.list_presets(tag="low-risk")] == ["conservative"]
    assert store.list_presets(tag="nothing") == []

    assert store.rate_preset("mine", 5).rating == 5.0
    rated = store.rate_preset(made.id, 4)
    assert (rated.rating, rated.ratings) == (4.5, 2)
    assert [e.action for e in store.audit_log(limit=3)] == [
        "preset.rate",
        "preset.rate",
        "preset.create",
    ]


@pytest.mark.parametrize("rating", [0, 6, -1, 3.5, True, "5"])
def test_a_bad_rating_is_a_clear_error_and_changes_nothing(
    store: ConfigStore, rating: object
) -> None:
    with pytest.raises(InvalidInput, match="from 1 to 5"):
        store.rate_preset("default", rating)  # type: ignore[arg-type]
    assert store.get_preset("default", count_download=False).ratings == 0


def test_preset_errors_store_nothing(store: ConfigStore, base_toml: str) -> None:
    before = store.count_rows()
    with pytest.raises(PresetExists, match="'default' already exists"):
        store.create_preset("default", "again", base_toml, "ana")
    with pytest.raises(InvalidConfig, match=r"planner\.max_depth"):
        store.create_preset("bad", "", "[planner]\nmax_depth = 'x'\n", "ana")
    with pytest.raises(InvalidInput):
        store.create_preset("tagged", "", base_toml, "ana", tags="one-string")
    assert store.count_rows() == before


# -- audit and subscribers ---------------------------------------------------------------------


def test_every_change_is_audited_newest_first(store: ConfigStore, base_toml: str) -> None:
    config = store.create_new_version("core", "Core", base_toml, created_by="ana").config
    store.assign_config_to_bucket("b", config.id, "bo", "why")
    entries = store.audit_log(limit=2)
    assert [(e.action, e.actor, e.entity, e.entity_id) for e in entries] == [
        ("bucket.assign", "bo", "bucket", "b"),
        ("config.create", "ana", "planner_config", str(config.id)),
    ]
    assert entries[0].detail["config_id"] == config.id
    assert entries[0].detail["reason"] == "why"
    assert entries[1].detail["version"] == 1
    assert all(_aware_utc(e.at) for e in entries)
    assert entries[0].id > entries[1].id
    with pytest.raises(InvalidInput):
        store.audit_log(limit=0)


def test_subscribers_hear_committed_changes_and_a_failing_one_breaks_nothing(
    store: ConfigStore, base_toml: str
) -> None:
    heard: list[tuple[ConfigChange, int]] = []

    def broken(change: ConfigChange) -> None:
        raise RuntimeError("listener bug")

    def listener(change: ConfigChange) -> None:
        # reading the store from the callback sees the change: it was committed first
        heard.append((change, len(store.get_version_history(change.name))))

    store.subscribe(broken)
    stop = store.subscribe(listener)
    config = store.create_new_version("core", "Core", base_toml).config
    store.create_new_version("core", "Core", base_toml)  # content-equal: no event
    with pytest.raises(InvalidConfig):
        store.create_new_version("core", "Core", "[planner\n")
    store.assign_config_to_bucket("b", config.id)
    stop()
    store.rollback_to_version("b", "core", 1)

    assert [change for change, _ in heard] == [
        ConfigChange("version_created", "core", config.id, config.digest, version=1),
        ConfigChange("bucket_assigned", "core", config.id, config.digest, bucket="b", version=1),
    ]
    assert heard[0][1] == 1
    assert len(store.bucket_history("b")) == 2


# -- schema, lifecycle, database setup ----------------------------------------------------------


def test_migrations_create_exactly_the_models(store: ConfigStore) -> None:
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("0005",)
        ]


def test_concurrent_first_use_migrates_once(store_url: str) -> None:
    stores = [ConfigStore(store_url) for _ in range(4)]
    errors: list[BaseException] = []

    def first_use(opened: ConfigStore) -> None:
        try:
            opened.list_presets()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(stores[0].list_presets()) == 3
    finally:
        for opened in stores:
            opened.close()


def test_data_survives_reopening_and_a_closed_store_refuses_work(
    store_url: str, base_toml: str
) -> None:
    with ConfigStore(store_url) as first:
        config = first.create_new_version("core", "Core", base_toml).config
        first.assign_config_to_bucket("core", config.id)
    with pytest.raises(StoreError, match="closed"):
        first.get_bucket_config("core")
    with ConfigStore(store_url) as again:
        assert again.get_bucket_config("core") == config


def test_a_bad_or_unreachable_database_is_a_store_error_that_never_shows_the_url(
    tmp_path: Path,
) -> None:
    with pytest.raises(StoreError, match="Cannot use the given database URL") as bad:
        ConfigStore("nosuchdb://admin:hunter2@x/y")
    assert "hunter2" not in bad.value.message
    assert "admin" not in bad.value.message
    unreachable = ConfigStore("postgresql://opsuser:hunter2@127.0.0.1:1/nonedb")
    with pytest.raises(StoreError, match="reachable") as down:
        unreachable.list_configs()
    unreachable.close()
    for secret in ("hunter2", "opsuser", "nonedb", "postgresql://"):
        assert secret not in down.value.message
        assert secret not in repr(unreachable)


def test_a_schema_from_a_newer_planforge_is_a_clear_error(store_url: str) -> None:
    with ConfigStore(store_url) as first:
        first.migrate()
        with first.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with ConfigStore(store_url) as second, pytest.raises(StoreError, match="newer planforge"):
        second.list_configs()


def test_store_errors_are_planner_errors() -> None:
    assert issubclass(StoreError, PlannerError)
    assert issubclass(VersionConflict, StoreError)


def test_the_default_database_is_a_sqlite_file_under_planforge_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_toml: str
) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "home"))
    with ConfigStore.from_environment() as store:
        store.create_new_version("core", "Core", base_toml)
    assert (tmp_path / "home" / "planforge.db").is_file()
    monkeypatch.setenv(ENV_DATABASE_URL, f"sqlite:///{tmp_path / 'other.db'}")
    assert resolve_url().database == str(tmp_path / "other.db")
    assert resolve_url(home=tmp_path).database == str(tmp_path / "other.db")


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg2://u@h/db"],
)
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    assert normalise_url(url).drivername == "postgresql+psycopg"


def test_sqlite_runs_in_wal_with_durable_commits_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 30_000,
    }


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgres_url_from_the_environment_is_used(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert is_postgres(store_url)
    monkeypatch.setenv(ENV_DATABASE_URL, store_url.replace("postgresql+psycopg://", "postgres://"))
    with ConfigStore.from_environment() as store:
        assert store.engine.dialect.name == "postgresql"
        assert len(store.list_presets()) == 3


def test_a_nul_character_gets_the_same_clear_answer_on_both_databases(
    store: ConfigStore, base_toml: str
) -> None:
    """PostgreSQL refuses NUL in text even to compare it: a lookup by such a name finds
    nothing and a write names the field, as on SQLite, never a database failure."""
    config = store.create_new_version("core", "Core", base_toml).config
    store.assign_config_to_bucket("core", config.id)
    with pytest.raises(BucketNotFound):
        store.get_bucket_config("b\x00x")
    with pytest.raises(ConfigNotFound):
        store.get_active("co\x00re")
    with pytest.raises(ConfigNotFound):
        store.get_version("co\x00re", 1)
    with pytest.raises(ConfigNotFound):
        store.rollback_to_version("core", "co\x00re", 1)
    with pytest.raises(PresetNotFound):
        store.get_preset("def\x00ault")
    assert store.get_version_history("co\x00re") == []
    assert store.bucket_history("b\x00x") == []
    assert store.list_presets(tag="bal\x00anced") == []
    with pytest.raises(InvalidInput, match="NUL"):
        store.assign_config_to_bucket("core", config.id, reason="why\x00not")
    with pytest.raises(InvalidInput, match="control characters"):
        store.create_new_version("n\x00ul", "Nul", base_toml)
    with pytest.raises(InvalidInput, match="NUL"):
        store.create_new_version("core", "Core", base_toml, description="d\x00")
    assert store.get_bucket_config("core") == config
