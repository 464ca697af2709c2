"""Find a dotted module's source file without importing anything.

`importlib.util.find_spec("a.b.c")` imports `a` and `a.b` to learn their `__path__`, which
runs plugin code. We instead follow the rules of the standard path finder on the file
system: for each component, walk the candidate directories in order; a directory with an
`__init__` is a regular package and ends the search, a module file ends it too, and bare
directories are namespace portions whose union is searched next. A compiled extension,
a bytecode-only module or anything an exotic finder would handle gives `None`: its metadata
then has to come from the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.machinery import BYTECODE_SUFFIXES, EXTENSION_SUFFIXES

__all__ = ["ModuleLocator"]

_INIT_EXTENSIONS = frozenset("__init__" + suffix for suffix in EXTENSION_SUFFIXES)
_INIT_BYTECODE = frozenset("__init__" + suffix for suffix in BYTECODE_SUFFIXES)


class ModuleLocator:
    """Resolves module names to source files; directory listings are cached per instance.

    Make one per discovery pass: the cache assumes the tree does not change meanwhile, and
    it is bounded by the directories the pass actually visits. `listings` may hand over
    directory listings the pass has already read (the entry-point scan lists the search
    path too); each is used as if this locator had listed the directory itself.
    """

    __slots__ = ("_found", "_listings", "_search_path", "_seeds")

    def __init__(
        self, search_path: Sequence[str], *, listings: dict[str, list[str]] | None = None
    ) -> None:
        self._search_path = tuple(entry or "." for entry in search_path)
        self._listings: dict[str, frozenset[str]] = {}
        self._seeds = listings if listings is not None else {}
        self._found: dict[str, str | None] = {}  # a module's entry points usually share it

    @property
    def directories(self) -> tuple[str, ...]:
        """Every directory whose listing a lookup relied on, sorted."""
        return tuple(sorted(self._listings))

    def _listing(self, directory: str) -> frozenset[str]:
        listing = self._listings.get(directory)
        if listing is None:
            seed = self._seeds.pop(directory, None)
            try:
                listing = frozenset(os.listdir(directory) if seed is None else seed)
            except OSError:
                listing = frozenset()
            self._listings[directory] = listing
        return listing

    def _init_in(self, directory: str) -> str | None:
        """`directory`'s `__init__` source, `""` if compiled only, `None` if not a package."""
        listing = self._listing(directory)
        if not listing.isdisjoint(_INIT_EXTENSIONS):
            return ""
        if "__init__.py" in listing:
            return os.path.join(directory, "__init__.py")
        if not listing.isdisjoint(_INIT_BYTECODE):
            return ""
        return None

    def locate(self, module: str) -> str | None:
        """The source file of `module`, or `None` if it has none we can read."""
        found = self._found
        if module not in found:
            found[module] = self._locate(module)
        return found[module]

    def _locate(self, module: str) -> str | None:
        parts = module.split(".")
        for part in parts:
            if not part.isidentifier():
                return None
        locations: Sequence[str] = self._search_path
        last = len(parts) - 1
        for index, part in enumerate(parts):
            portions: list[str] = []
            found: str | None = None
            package_dir: str | None = None
            source = part + ".py"
            for location in locations:
                listing = self._listing(location)
                if part in listing:
                    candidate = os.path.join(location, part)
                    init = self._init_in(candidate)
                    if init is not None:
                        if not init:
                            return None
                        package_dir, found = candidate, init
                        break
                # the finder's order in one directory: extension, source, bytecode
                for suffix in EXTENSION_SUFFIXES:
                    if part + suffix in listing:
                        return None
                if source in listing:
                    if index != last:
                        return None
                    found = os.path.join(location, source)
                    break
                for suffix in BYTECODE_SUFFIXES:
                    if part + suffix in listing:
                        return None
                if part in listing and os.path.isdir(os.path.join(location, part)):
                    portions.append(os.path.join(location, part))
            if index == last:
                return found
            if package_dir is not None:
                locations = (package_dir,)
            elif portions:
                locations = portions
            else:
                return None
        return None
