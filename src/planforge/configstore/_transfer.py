"""Moving configurations between stores, machines and people as plain TOML files.

An exported file is the stored TOML body, unchanged, under a comment header that TOML
parsers skip, so the file is also a valid configuration on its own:

```toml
# planforge-config
# name: core
# title: Core bucket
# version: 3
# created: 2025-01-02T03:04:05+00:00
# exported: 2025-02-01T00:00:00+00:00
# description: first line
# description: second line

[planner]
...
```

A value spanning lines repeats its key once per line. The header ends at the first blank
line; everything after it is the body, byte for byte, so an exported file imports back to
the same content digest. A file without the header (any TOML configuration) imports too,
given a name and a title.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from planforge.configstore.errors import ExportFormatError

if TYPE_CHECKING:
    from planforge.configstore._records import ConfigVersion, CreateResult
    from planforge.configstore._store import ConfigStore

__all__ = [
    "HEADER_MARK",
    "ExportHeader",
    "clone_config",
    "default_actor",
    "export_config",
    "import_config",
    "parse_export",
]

HEADER_MARK: Final = "# planforge-config"
_FIELDS: Final = ("name", "title", "version", "created", "exported", "description")


@dataclass(frozen=True, slots=True)
class ExportHeader:
    """The metadata an exported file carries; every field is optional on import."""

    name: str | None = None
    title: str | None = None
    version: int | None = None
    created: datetime | None = None
    exported: datetime | None = None
    description: str | None = None


def default_actor() -> str:
    """The OS user name: who a change is recorded as when nobody says otherwise."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER in a container
        return "unknown"


def _header_lines(key: str, value: str) -> list[str]:
    return [f"# {key}: {line}".rstrip() for line in value.split("\n")]


def export_config(version: ConfigVersion, *, exported_at: datetime | None = None) -> str:
    """The version as a TOML file with the metadata header; the body is stored TOML as is."""
    exported = exported_at if exported_at is not None else datetime.now(UTC)
    lines = [HEADER_MARK]
    lines += _header_lines("name", version.name)
    lines += _header_lines("title", version.title)
    lines += _header_lines("version", str(version.version))
    lines += _header_lines("created", version.created_at.isoformat())
    lines += _header_lines("exported", exported.isoformat())
    if version.description:
        lines += _header_lines("description", version.description.replace("\r\n", "\n"))
    return "\n".join(lines) + "\n\n" + version.toml


def _timestamp(value: str, key: str, line: int) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ExportFormatError(
            f"{key}: {value!r} is not an ISO 8601 timestamp", line=line
        ) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_export(text: str) -> tuple[ExportHeader | None, str]:
    """The header (None when the file has none) and the TOML body, unchanged.

    Unknown header keys are ignored, so newer exports still import; a header line that is not
    `# key: value`, or a header with no blank line and body after it, is an error.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n").rstrip() != HEADER_MARK:
        return None, text
    values: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    offset = len(lines[0])
    for number, raw in enumerate(lines[1:], start=2):
        offset += len(raw)
        line = raw.rstrip("\r\n")
        if not line.strip():
            body = text[offset:]
            return _header(values, first_line), body
        if not line.startswith("#") or ":" not in line:
            raise ExportFormatError(
                f"header line {line!r} is not '# key: value'; the header ends at the first "
                "blank line before the TOML",
                line=number,
            )
        key, _, value = line[1:].partition(":")
        key = key.strip()
        value = value[1:] if value.startswith(" ") else value
        values.setdefault(key, []).append(value)
        first_line.setdefault(key, number)
    raise ExportFormatError(
        "the header is not followed by a blank line and the configuration; "
        "the file looks truncated",
        line=len(lines),
    )


def _header(values: dict[str, list[str]], first_line: dict[str, int]) -> ExportHeader:
    def joined(key: str) -> str | None:
        return "\n".join(values[key]) if key in values else None

    version: int | None = None
    raw_version = joined("version")
    if raw_version is not None:
        try:
            version = int(raw_version.strip())
        except ValueError as exc:
            raise ExportFormatError(
                f"version: {raw_version!r} is not a whole number", line=first_line["version"]
            ) from exc
    created, exported = joined("created"), joined("exported")
    return ExportHeader(
        name=(joined("name") or "").strip() or None,
        title=joined("title"),
        version=version,
        created=_timestamp(created, "created", first_line["created"]) if created else None,
        exported=_timestamp(exported, "exported", first_line["exported"]) if exported else None,
        description=joined("description"),
    )


def import_config(
    store: ConfigStore,
    text: str,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    created_by: str | None = None,
) -> CreateResult:
    """Validate and store a file (exported or plain TOML) as the next version of its name.

    `name`, `title` and `description` override the header's; a file without a header needs
    a name and a title. Content equal to the name's active version is reported, not stored
    again (`CreateResult.created` is False).
    """
    header, body = parse_export(text)
    header = header if header is not None else ExportHeader()
    final_name = name if name is not None else header.name
    final_title = title if title is not None else header.title
    if not final_name or not final_title:
        missing = [
            option for option, value in (("name", final_name), ("title", final_title)) if not value
        ]
        given = (
            "has no planforge-config header"
            if header == ExportHeader()
            else f"header gives no {' and no '.join(missing)}"
        )
        raise ExportFormatError(
            f"the file {given}: give the {' and the '.join(missing)} to import it under "
            f"({', '.join('--' + option for option in missing)})"
        )
    return store.create_new_version(
        final_name,
        final_title,
        body,
        description=description if description is not None else header.description,
        created_by=created_by if created_by is not None else default_actor(),
    )


def clone_config(
    store: ConfigStore,
    config_id: int,
    *,
    name: str,
    title: str,
    created_by: str | None = None,
) -> CreateResult:
    """A stored version copied under a new name (export, then import); same body and digest."""
    source = store.get_config_by_id(config_id)
    return import_config(
        store,
        export_config(source),
        name=name,
        title=title,
        created_by=created_by,
    )
