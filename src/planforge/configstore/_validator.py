"""The configuration documents the store accepts, and the digest that identifies them.

A document is checked before any transaction opens: its size first (cheap), then the
holistic planner's own validator, so the store never holds a configuration the planner
would refuse to run.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from planforge.configstore.errors import DocumentTooLarge, InvalidConfig, InvalidInput
from planforge.holistic import ConfigError, parse_config

if TYPE_CHECKING:
    from planforge.portfolio.planner import HolisticPortfolioPlanner

__all__ = ["BUCKET_PLANNER", "DocumentValidator", "content_digest"]

#: The planner whose configurations the store keeps, and so the one a bucket runs by default.
BUCKET_PLANNER = "holistic"


def content_digest(text: str) -> str:
    """sha256 of the TOML exactly as stored (UTF-8), hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DocumentValidator:
    """Checks configuration TOML against the holistic planner's modules and settings."""

    def __init__(self, max_document_bytes: int) -> None:
        self.max_document_bytes = max_document_bytes
        self._planner: HolisticPortfolioPlanner | None = None
        self._lock = threading.Lock()

    def validate(self, text: object, *, name: str | None) -> str:
        """The text itself when it is a valid configuration; raises, never stores."""
        if not isinstance(text, str):
            raise InvalidInput("config_toml", type(text).__name__, "must be the TOML text")
        size = len(text.encode("utf-8", errors="replace"))
        if size > self.max_document_bytes:
            raise DocumentTooLarge(size, self.max_document_bytes)
        if not text.strip():
            raise InvalidConfig(
                ConfigError("the document is empty; it would enable no module", source="toml"),
                name=name,
            )
        try:
            parse_config(
                text,
                registry=self._planner_instance().registry,
                domain_settings=_domain_settings(),
                source=name or "toml",
            )
        except ConfigError as exc:
            raise InvalidConfig(exc, name=name) from exc
        return text

    def _planner_instance(self) -> HolisticPortfolioPlanner:
        # Built once per store: the registry behind it is what validation checks modules
        # against. parse_config is called directly rather than load_config, which would read
        # a one-line string naming a file or preset instead of validating the text itself.
        with self._lock:
            if self._planner is None:
                from planforge.portfolio.planner import HolisticPortfolioPlanner

                self._planner = HolisticPortfolioPlanner()
            return self._planner


def _domain_settings() -> type[Any]:
    from planforge.portfolio.domain import PortfolioSettings

    return PortfolioSettings
