"""Fresh bytecode: found when import would trust it, never when the source changed since."""

from __future__ import annotations

import os
import py_compile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from planforge.factory._pycache import SUPPORTED, BytecodeCache, cached_code

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="the bytecode reader knows CPython 3.11")


def write_module(directory: Path, source: str) -> Path:
    path = directory / "plugin.py"
    path.write_text(textwrap.dedent(source))
    return path


def code_of(path: Path) -> Any:
    info = os.stat(path)
    return cached_code(str(path), info.st_size, info.st_mtime_ns)


def test_fresh_bytecode_is_found_and_stale_bytecode_is_not(tmp_path: Path) -> None:
    path = write_module(tmp_path, "class P(Planner):\n    name = 'p'\n")
    assert code_of(path) is None  # never compiled
    py_compile.compile(str(path), doraise=True)
    assert code_of(path) is not None
    path.write_text("class P(Planner):\n    name = 'longer'\n")  # another size
    assert code_of(path) is None
    py_compile.compile(str(path), doraise=True)
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))  # another mtime
    assert code_of(path) is None


def test_hash_checked_and_damaged_bytecode_is_not_used(tmp_path: Path) -> None:
    path = write_module(tmp_path, "class P(Planner):\n    name = 'p'\n")
    mode = py_compile.PycInvalidationMode.CHECKED_HASH
    cache = py_compile.compile(str(path), doraise=True, invalidation_mode=mode)
    assert code_of(path) is None
    py_compile.compile(str(path), doraise=True)
    data = Path(cache).read_bytes()
    Path(cache).write_bytes(data[:20])  # a header that matches, and a body cut short
    assert code_of(path) is None


def test_the_bytecode_cache_lists_each_pycache_once(tmp_path: Path) -> None:
    """A directory never imported costs one listing; a file compiled later in the same pass is
    not seen (one pass, one listing), and a new cache sees it."""
    path = write_module(tmp_path, "class P(Planner):\n    name = 'p'\n")
    info = os.stat(path)
    stamp = (str(path), info.st_size, info.st_mtime_ns)
    bytecode = BytecodeCache()
    assert bytecode.code(*stamp) is None
    py_compile.compile(str(path), doraise=True)
    assert bytecode.code(*stamp) is None
    assert BytecodeCache().code(*stamp) is not None
