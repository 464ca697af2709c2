"""Builders of fake installed distributions and plugin files for discovery tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

ATTRIBUTES = {
    "name": "alpha",
    "version": "1.2.3",
    "capabilities": ("rebalance", "tax"),
    "tags": ("core",),
    "tier": "gold",
    "production_ready": True,
    "reliability_score": 0.75,
    "description": "Alpha planner",
    "keywords": ("portfolio",),
    "stateful": True,
}


def planner_source(class_name: str = "Alpha", **overrides: object) -> str:
    """A realistic plugin module holding one planner class with literal metadata."""
    attributes = {**ATTRIBUTES, **overrides}
    body = "\n".join(f"    {key} = {value!r}" for key, value in attributes.items())
    return (
        '"""A plugin."""\n\n'
        "from planforge.contract import Plan, Planner\n\n\n"
        f"class {class_name}(Planner):\n"
        f"{body}\n\n"
        "    def plan(self, objective, context):\n"
        "        return self.new_plan(objective)\n"
    )


def add_dist(
    site: Path,
    dist: str,
    entry_points: str | None,
    *,
    version: str = "1.0",
    modules: dict[str, str] | None = None,
) -> Path:
    """Install a fake distribution: its dist-info (with `entry_points.txt`) and module files.

    `modules` maps a relative path (`pkg/sub/mod.py`) to its source.
    """
    escaped = re.sub(r"[^\w\d.]+", "_", dist)  # as wheels name their dist-info directories
    info = site / f"{escaped}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)
    for relative, source in (modules or {}).items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return info


def rewrite_keeping_stamp(path: Path, text: str) -> None:
    """Change a file's content but keep its size and mtime, so only a real read notices."""
    info = path.stat()
    assert len(text.encode()) == info.st_size, "the new text must keep the size"
    path.write_text(text)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def touch_later(path: Path) -> None:
    """Move a file's mtime forward (filesystems with coarse clocks need a visible step)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))
