"""Fewer glibc malloc arenas for the controller process.

Role: cap the arenas glibc's allocator creates, before the controller starts threads.
Each thread that allocates (aiosqlite's, asyncio's executor threads building TLS contexts
or resolving names) otherwise gets an arena of its own, up to eight per core, and the
memory freed in one arena is not reused by another, so a long-running process holds
more resident memory than it uses. Python objects come from the main thread's pymalloc
pools anyway; the threads allocate little. Measured with the side-by-side fleet bench:
about 2 MiB less peak RSS at 200 objects (docs/performance.md).

Invariants: best effort and silent; only glibc on Linux has ``mallopt``; elsewhere, or
when the environment already sets ``MALLOC_ARENA_MAX`` (the operator's choice wins),
nothing is changed. Must run before the first thread is started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Final

# From glibc's <malloc.h>.
_M_ARENA_MAX: Final = -8
DEFAULT_ARENAS: Final = 2


def cap_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas; whether it was done."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
