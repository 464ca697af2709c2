"""Export with a metadata header, parse it back, import, clone."""

from __future__ import annotations

import hashlib
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planforge.configstore import ConfigStore, ConfigVersion
from planforge.configstore._transfer import (
    HEADER_MARK,
    ExportHeader,
    clone_config,
    default_actor,
    export_config,
    import_config,
    parse_export,
)
from planforge.configstore.errors import ConfigNotFound, ExportFormatError, InvalidConfig

BODY = """\
# the core bucket's configuration

[planner]
max_depth = 4

[opportunity_calculators.profit_taking]
enabled = true

[pattern_generators.direct_buy]
enabled = true

[sequence_generators.combinatorial]
enabled = true
"""

CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
EXPORTED = datetime(2025, 2, 1, 12, 0, 0, tzinfo=UTC)


def _version(
    *, description: str | None = "Balanced, few trades", body: str = BODY
) -> ConfigVersion:
    return ConfigVersion(
        id=7,
        name="core",
        title="Core bucket",
        description=description,
        toml=body,
        digest=hashlib.sha256(body.encode()).hexdigest(),
        version=3,
        active=True,
        created_at=CREATED,
        created_by="ana",
        parent_id=6,
    )


def test_export_has_the_header_then_the_body_unchanged() -> None:
    text = export_config(_version(), exported_at=EXPORTED)
    head, _, body = text.partition("\n\n")
    assert head.splitlines() == [
        HEADER_MARK,
        "# name: core",
        "# title: Core bucket",
        "# version: 3",
        "# created: 2025-01-02T03:04:05+00:00",
        "# exported: 2025-02-01T12:00:00+00:00",
        "# description: Balanced, few trades",
    ]
    assert body == BODY
    assert tomllib.loads(text) == tomllib.loads(BODY)  # the header is only comments


def test_parse_export_reads_every_field_and_the_exact_body() -> None:
    header, body = parse_export(export_config(_version(), exported_at=EXPORTED))
    assert header == ExportHeader(
        name="core",
        title="Core bucket",
        version=3,
        created=CREATED,
        exported=EXPORTED,
        description="Balanced, few trades",
    )
    assert body == BODY


@pytest.mark.parametrize(
    "description",
    [
        "first line\nsecond line\n\nafter a blank line",
        "# looks like a header line\nkey: value",
        "trailing newline\n",
        "  indented first line\nsecond",
    ],
)
def test_a_description_spanning_lines_round_trips(description: str) -> None:
    header, body = parse_export(export_config(_version(description=description)))
    assert header is not None
    assert header.description == description
    assert body == BODY


def test_no_description_means_none() -> None:
    text = export_config(_version(description=None))
    assert "# description" not in text
    header, _ = parse_export(text)
    assert header is not None
    assert header.description is None


def test_exported_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    header, _ = parse_export(export_config(_version()))
    assert header is not None
    assert header.exported is not None
    assert header.exported >= before.replace(microsecond=0)
    assert header.exported.tzinfo is not None


def test_a_body_with_leading_blank_lines_and_no_final_newline_is_kept_byte_for_byte() -> None:
    body = "\n\n[planner]\nmax_depth = 3"
    _, parsed = parse_export(export_config(_version(body=body)))
    assert parsed == body


def test_a_plain_toml_file_has_no_header_and_is_its_own_body() -> None:
    header, body = parse_export(BODY)
    assert header is None
    assert body == BODY


def test_windows_line_endings_in_the_header_are_understood() -> None:
    text = export_config(_version(), exported_at=EXPORTED).replace("\n", "\r\n")
    header, body = parse_export(text)
    assert header is not None
    assert header.name == "core"
    assert header.version == 3
    assert body == BODY.replace("\n", "\r\n")


def test_unknown_header_keys_are_ignored() -> None:
    text = f"{HEADER_MARK}\n# name: core\n# exporter: planforge 9\n\n{BODY}"
    header, body = parse_export(text)
    assert header == ExportHeader(name="core")
    assert body == BODY


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (f"{HEADER_MARK}\n# name: core\nmax_depth = 3\n\n{BODY}", 3, "not '# key: value'"),
        (f"{HEADER_MARK}\n# name: core\n# version: three\n\n{BODY}", 3, "not a whole number"),
        (f"{HEADER_MARK}\n# created: yesterday\n\n{BODY}", 2, "ISO 8601"),
        (f"{HEADER_MARK}\n# name: core\n# title: Core\n", 3, "truncated"),
    ],
)
def test_a_broken_header_is_a_clear_error(text: str, line: int, words: str) -> None:
    with pytest.raises(ExportFormatError) as caught:
        parse_export(text)
    assert caught.value.line == line
    assert words in caught.value.message


# -- through a real store ---------------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[ConfigStore]:
    """A SQLite file, or a PostgreSQL schema of this test's own (see conftest.py): never the
    public schema, whose migration state belongs to whoever used the database last."""
    with ConfigStore(store_url) as opened:
        yield opened


@pytest.fixture
def unique() -> str:
    """A name no other test (or helper sharing the PostgreSQL database) uses."""
    return f"core-{uuid.uuid4().hex[:10]}"


def test_an_exported_file_imports_back_to_the_same_digest(store: ConfigStore, unique: str) -> None:
    stored = store.create_new_version(unique, "Core", BODY, description="two\nlines").config
    text = export_config(stored)

    again = import_config(store, text)
    assert again.created is False  # equal to the active version: reported, not duplicated
    assert again.config.id == stored.id

    copy = import_config(store, text, name=f"{unique}-copy", created_by="bo")
    assert copy.created is True
    assert copy.config.digest == stored.digest
    assert copy.config.toml == stored.toml
    assert copy.config.title == "Core"
    assert copy.config.description == "two\nlines"
    assert copy.config.created_by == "bo"
    assert copy.config.version == 1


def test_import_into_another_store_keeps_name_title_description_and_digest(
    store: ConfigStore, unique: str, tmp_path: Path
) -> None:
    stored = store.create_new_version(unique, "Core bucket", BODY, description="why").config
    store.create_new_version(unique, "Core bucket", BODY.replace("= 4", "= 5"))
    text = export_config(store.get_version(unique, 1))
    with ConfigStore(home=tmp_path / "elsewhere") as other:
        result = import_config(other, text, title="Imported core")
        assert result.created is True
        assert result.config.name == unique
        assert result.config.title == "Imported core"
        assert result.config.description == "why"
        assert result.config.digest == stored.digest
        assert result.config.version == 1
        assert result.config.created_by == default_actor()


def test_a_plain_toml_file_needs_a_name_and_a_title(store: ConfigStore, unique: str) -> None:
    before = len(store.list_configs())
    with pytest.raises(ExportFormatError, match=r"no planforge-config header.*--name.*--title"):
        import_config(store, BODY)
    with pytest.raises(ExportFormatError, match="--title"):
        import_config(store, BODY, name=unique)
    assert len(store.list_configs()) == before
    result = import_config(store, BODY, name=unique, title="From a file")
    assert result.created is True
    assert result.config.toml == BODY


def test_an_invalid_body_is_rejected_and_nothing_is_stored(store: ConfigStore, unique: str) -> None:
    bad = _version(body="[planner]\nmax_depth = 'deep'\n")
    with pytest.raises(InvalidConfig) as caught:
        import_config(store, export_config(bad), name=unique)
    assert caught.value.key == "planner.max_depth"
    with pytest.raises(ConfigNotFound):
        store.get_active(unique)


def test_clone_copies_a_version_under_a_new_name(store: ConfigStore, unique: str) -> None:
    store.create_new_version(unique, "Core", BODY, description="original")
    second = store.create_new_version(unique, "Core", BODY.replace("= 4", "= 3")).config
    clone = clone_config(store, second.id, name=f"{unique}-exp", title="Experiment")
    assert clone.created is True
    assert clone.config.name == f"{unique}-exp"
    assert clone.config.title == "Experiment"
    assert clone.config.digest == second.digest
    assert clone.config.version == 1
    assert store.get_active(unique).id == second.id  # the source is untouched
    with pytest.raises(ConfigNotFound):
        clone_config(store, 10**9, name=f"{unique}-none", title="None")
