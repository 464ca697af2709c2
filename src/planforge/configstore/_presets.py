"""Presets: shared starting configurations with tags, download counts and star ratings.

The shipped presets are seeded inside the schema upgrade's transaction; each preset written
(seeded, created or rated) adds its audit row in its own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from planforge.configstore._audit import write_audit
from planforge.configstore._inputs import (
    check_optional_text,
    check_tags,
    check_text,
    findable,
    now,
    storable_id,
)
from planforge.configstore._models import NAME_LENGTH, PresetRow, PresetTagRow
from planforge.configstore._records import Preset
from planforge.configstore._validator import content_digest
from planforge.configstore.errors import (
    InvalidInput,
    PresetExists,
    PresetNotFound,
    StoreError,
)

if TYPE_CHECKING:
    from planforge.configstore._sessions import Sessions
    from planforge.configstore._validator import DocumentValidator

__all__ = ["SEED_AUTHOR", "SEED_TAGS", "Presets", "seed_presets"]

SEED_AUTHOR: Final = "planforge"
SEED_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "aggressive": ("growth", "shipped"),
    "conservative": ("low-risk", "shipped"),
    "default": ("balanced", "shipped"),
}

P = PresetRow

_PRESET_COLUMNS = (
    P.id,
    P.name,
    P.description,
    P.toml,
    P.author,
    P.downloads,
    P.rating_sum,
    P.rating_count,
    P.created_at,
)


@dataclass(slots=True)
class _Seed:
    name: str
    description: str
    toml: str
    tags: tuple[str, ...]


class Presets:
    """Creates, lists, hands out and rates presets."""

    def __init__(self, sessions: Sessions, validator: DocumentValidator) -> None:
        self._sessions = sessions
        self._validator = validator

    def tagged(self, tag: str | None) -> list[Preset]:
        """All presets by name, or those carrying `tag` (tags are lower case)."""
        query = select(*_PRESET_COLUMNS).order_by(P.name)
        if tag is not None:
            if not findable(tag):
                return []
            wanted = tag.strip().lower()
            query = query.where(
                P.id.in_(select(PresetTagRow.preset_id).where(PresetTagRow.tag == wanted))
            )
        with self._sessions.reading("list presets") as connection:
            return _records(connection, connection.execute(query).all())

    def get(self, id_or_name: int | str, count_download: bool) -> Preset:
        """A preset by id or name; fetching it counts a download unless told otherwise."""
        if not count_download:
            with self._sessions.reading("read a preset") as connection:
                return _by_id(connection, _find(connection, id_or_name))
        with self._sessions.writing("read a preset") as connection:
            preset_id = _find(connection, id_or_name)
            connection.execute(update(P).where(P.id == preset_id).values(downloads=P.downloads + 1))
            return _by_id(connection, preset_id)

    def create(
        self, name: str, description: str, toml: str, author: str, tags: Sequence[str]
    ) -> Preset:
        """A new shared preset; its TOML is validated like a configuration version."""
        check_text("name", name, NAME_LENGTH)
        check_text("author", author, NAME_LENGTH)
        checked_description = check_optional_text("description", description) or ""
        cleaned_tags = check_tags(tags)
        text = self._validator.validate(toml, name=name)
        try:
            with self._sessions.writing("create a preset") as connection:
                if connection.execute(select(P.id).where(P.name == name)).first() is not None:
                    raise PresetExists(name)
                preset_id = _insert(
                    connection,
                    _Seed(name, checked_description, text, cleaned_tags),
                    author,
                    "preset.create",
                )
                preset = _by_id(connection, preset_id)
        except StoreError as exc:
            # two creators racing on PostgreSQL: the loser hits the unique constraint
            if isinstance(exc.__cause__, IntegrityError):
                raise PresetExists(name) from exc
            raise
        return preset

    def rate(self, id_or_name: int | str, rating: int) -> Preset:
        """Add one vote of 1..5 stars."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InvalidInput("rating", rating, "a rating is a whole number from 1 to 5")
        with self._sessions.writing("rate a preset") as connection:
            preset_id = _find(connection, id_or_name)
            connection.execute(
                update(P)
                .where(P.id == preset_id)
                .values(rating_sum=P.rating_sum + rating, rating_count=P.rating_count + 1)
            )
            write_audit(connection, "cli", "preset.rate", "preset", preset_id, {"rating": rating})
            return _by_id(connection, preset_id)


def seed_presets(connection: Connection) -> None:
    """Add the shipped presets that are missing (inside the migration transaction)."""
    from planforge.portfolio.planner import PRESETS, preset_text

    present = set(connection.execute(select(P.name).where(P.name.in_(PRESETS))).scalars())
    for name in sorted(set(PRESETS) - present):
        text = preset_text(name)
        _insert(
            connection,
            _Seed(name, _preset_description(name, text), text, SEED_TAGS.get(name, ())),
            SEED_AUTHOR,
            "preset.seed",
        )


def _insert(connection: Connection, seed: _Seed, author: str, action: str) -> int:
    preset_id: int = connection.execute(
        insert(P)
        .values(
            name=seed.name,
            description=seed.description,
            toml=seed.toml,
            author=author,
            downloads=0,
            rating_sum=0,
            rating_count=0,
            created_at=now(),
        )
        .returning(P.id)
    ).scalar_one()
    if seed.tags:
        connection.execute(
            insert(PresetTagRow),
            [{"preset_id": preset_id, "tag": tag} for tag in seed.tags],
        )
    write_audit(
        connection,
        author,
        action,
        "preset",
        preset_id,
        {"name": seed.name, "tags": list(seed.tags), "digest": content_digest(seed.toml)},
    )
    return preset_id


def _records(connection: Connection, rows: Sequence[Any]) -> list[Preset]:
    """Records for preset rows, with all their tags fetched in one query."""
    ids = [row.id for row in rows]
    tags: dict[int, list[str]] = {preset_id: [] for preset_id in ids}
    if ids:
        for preset_id, tag in connection.execute(
            select(PresetTagRow.preset_id, PresetTagRow.tag)
            .where(PresetTagRow.preset_id.in_(ids))
            .order_by(PresetTagRow.preset_id, PresetTagRow.tag)
        ):
            tags[preset_id].append(tag)
    return [
        Preset(
            id=row.id,
            name=row.name,
            description=row.description,
            toml=row.toml,
            author=row.author,
            tags=tuple(tags[row.id]),
            downloads=row.downloads,
            rating=row.rating_sum / row.rating_count if row.rating_count else None,
            ratings=row.rating_count,
            created_at=row.created_at,
        )
        for row in rows
    ]


def _find(connection: Connection, id_or_name: int | str) -> int:
    """The id of the preset named (or numbered) `id_or_name`."""
    if isinstance(id_or_name, bool) or not isinstance(id_or_name, int | str):
        raise InvalidInput("preset", id_or_name, "give a preset id or name")
    found: int | None = None
    if isinstance(id_or_name, str) and not findable(id_or_name):
        raise PresetNotFound(id_or_name)
    if isinstance(id_or_name, str):
        found = connection.execute(select(P.id).where(P.name == id_or_name)).scalar()
        if found is None and id_or_name.isdigit():
            id_or_name = int(id_or_name)
    if found is None and isinstance(id_or_name, int) and storable_id(id_or_name):
        found = connection.execute(select(P.id).where(P.id == id_or_name)).scalar()
    if found is None:
        raise PresetNotFound(id_or_name)
    return found


def _by_id(connection: Connection, preset_id: int) -> Preset:
    rows = connection.execute(select(*_PRESET_COLUMNS).where(P.id == preset_id)).all()
    return _records(connection, rows)[0]


def _preset_description(name: str, text: str) -> str:
    """The comment lines at the top of a shipped preset, after its title line."""
    lines: list[str] = []
    for line in text.splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or f"The shipped {name} preset."
