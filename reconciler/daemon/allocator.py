"""The C allocator's settings for a long-running daemon: few malloc arenas.

Why: an idle daemon's resident memory is mostly its imported code, but several MB more is memory
glibc's malloc keeps after bursts of work (docs/performance.md, "Idle" → "RSS"). glibc gives each
thread that allocates an arena of its own, up to 8 per CPU; the daemon runs about 40 threads (work
queue workers, probers, the API server, watches), so a burst spread over them leaves free chunks
behind in a dozen arenas, none of which is ever handed back. Python's own allocator (pymalloc)
serves the small objects, so only larger blocks (buffers, big dicts and lists, SQLite, OpenSSL)
reach malloc; they do not need per-thread arenas to be fast, as the GIL serializes most of them.

- ``limit_arenas`` caps the arenas (``mallopt(M_ARENA_MAX)``), as ``MALLOC_ARENA_MAX`` would. It is
  called in-process, first thing in the daemon's and the node agent's ``run_*`` (before any thread
  starts: arenas are made when a new thread first allocates), so every way of starting gets it —
  the systemd unit, ``python -m reconciler``, the console script — without an environment
  variable to forget. A ``MALLOC_ARENA_MAX`` set by the operator wins (glibc reads it itself).
  Measured on the idle benchmark (100 pods, 2 CPUs): 79.8 → 77.8-78.2 MB, the free memory malloc
  held 5.2 → 2.1 MB.
- No ``malloc_trim`` after bursts: with two arenas trimming an idle daemon returned 0.4-0.8 MB
  (16 arenas: 1.3-1.9 MB), within the figure's noise; the rest is live, or free blocks inside
  Python's own small-object arenas (about 3 MB of 35), which trimming does not touch.

glibc only; elsewhere (musl, macOS) it does nothing. ctypes rather than a library: one call of
libc, which no maintained package wraps for this.
"""
from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # from glibc's malloc.h
DEFAULT_ARENAS = 2  # the main arena and one shared by every other thread


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded (libc among them): no library search
    except OSError:
        return None
    # mallopt is a glibc (and uClibc) extension: its presence is what tells glibc apart.
    return libc if hasattr(libc, "mallopt") else None


_LIBC = _libc()


def limit_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas; True if set. Call before threads start. ``MALLOC_ARENA_MAX`` wins."""
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_LIBC.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))
