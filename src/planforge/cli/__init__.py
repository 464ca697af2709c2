"""The `planforge` command line: rich tables for people, `--json` for machines.

Heavy modules (pydantic, the factory) are imported inside the commands that need them, so
`planforge --help` stays fast. A planforge error ends the command with exit code 1 and one
line on stderr saying what happened and what to do.
"""

from __future__ import annotations

import sys

from planforge.cli._apps import app

# Importing a command module registers its commands on `app`. `planforge --help` lists the
# commands in registration order, so these imports keep this order (hence the isort splits).
# isort: split
from planforge.cli import _planners  # noqa: F401

# isort: split
from planforge.cli import _plan  # noqa: F401

# isort: split
from planforge.cli import _batch  # noqa: F401

# isort: split
from planforge.cli import _health  # noqa: F401

# isort: split
from planforge.cli import _buckets, _config, _db, _modules, _presets  # noqa: F401

# isort: split
from planforge.cli import _users  # noqa: F401

# isort: split
from planforge.cli import _runs  # noqa: F401

# isort: split
from planforge.cli import _serve  # noqa: F401

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
