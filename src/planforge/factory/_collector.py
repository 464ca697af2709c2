"""Pausing the cyclic garbage collector over a burst of acyclic allocations.

Reading the discovery cache (hundreds of specs) or a plugin file's syntax tree (thousands of
nodes) allocates many objects without cycles. Each allocation burst triggers the collector's
full passes, which walk every object of the process: in a process that has imported the
factory, that cost more than the work itself (warm discovery: 2.6 ms with it, 1.4 ms without).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection inside the block; the collector's previous state after it."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
