"""Python's own bytecode of a source file, when it is fresh: the proof the file compiles.

pip compiles every module it installs, and `import` compiles the rest on first use, into
`__pycache__`. A file there whose header names this interpreter and the source's size and
mtime is what `import` itself trusts to run instead of the source; `_compiled.py` reads a
plugin file's classes from it. CPython 3.11 only, the bytecode `_compiled.py` knows.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
from types import CodeType
from typing import Final

__all__ = ["SUPPORTED", "BytecodeCache", "cached_code"]

SUPPORTED: Final = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
_MAX_BYTECODE: Final = 16 << 20


class BytecodeCache:
    """`cached_code` over many files, listing each `__pycache__` once: a file with no
    bytecode (a plugin directory never imported) then costs a set lookup, not a failed open.
    One pass's worth: a listing is not refreshed."""

    __slots__ = ("_listings",)

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}

    def code(self, path: str, size: int, mtime_ns: int) -> CodeType | None:
        if not SUPPORTED or sys.pycache_prefix is not None:
            return cached_code(path, size, mtime_ns)
        directory, _, name = _cache_path(path).rpartition(os.sep)
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return cached_code(path, size, mtime_ns) if name in names else None


def cached_code(path: str, size: int, mtime_ns: int) -> CodeType | None:
    """The module's code from a fresh `__pycache__` file of this interpreter, else `None`."""
    if not SUPPORTED:
        return None
    try:
        data = _read_all(_cache_path(path))
    except (OSError, ValueError, NotImplementedError):
        return None
    seconds, nanoseconds = divmod(mtime_ns, 1_000_000_000)
    mtime = int(seconds + nanoseconds * 1e-9)  # as `import` reads it, from the float st_mtime
    fresh = (
        data[:4] == importlib.util.MAGIC_NUMBER
        and data[4:8] == b"\0\0\0\0"  # checked by timestamp, not by hash
        and int.from_bytes(data[8:12], "little") == mtime & 0xFFFFFFFF
        and int.from_bytes(data[12:16], "little") == size & 0xFFFFFFFF
    )
    try:
        code = marshal.loads(memoryview(data)[16:]) if fresh else None
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, CodeType) else None


def _cache_path(path: str) -> str:
    """Where `import` keeps the file's bytecode (unoptimised, as for `python` without -O)."""
    if sys.pycache_prefix is not None:
        return importlib.util.cache_from_source(path, optimization="")
    head, _, tail = path.rpartition(os.sep)
    return f"{head}{os.sep}__pycache__{os.sep}{tail[:-3]}.{sys.implementation.cache_tag}.pyc"


def _read_all(path: str) -> bytes:
    descriptor = os.open(path, os.O_RDONLY)
    try:  # a file that grows while read is cut short, fails to load, and the source is parsed
        return os.read(descriptor, min(os.fstat(descriptor).st_size, _MAX_BYTECODE))
    finally:
        os.close(descriptor)
