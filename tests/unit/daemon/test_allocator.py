"""The malloc arena cap (daemon/allocator.py): threads share two arenas instead of one each.

Counted by glibc itself (``malloc_info`` lists one ``<heap>`` per arena), in a fresh interpreter,
as the cap only holds for arenas made after it (this one has run threads already).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon import allocator

REPO_ROOT = Path(__file__).resolve().parents[3]

# Eight threads each hold a malloc'd block at the same time (so none can take over another's
# arena), then glibc reports its arenas.
_COUNT_ARENAS = """
import ctypes, re, sys, threading
from reconciler.daemon import allocator
if sys.argv[1] == "limit":
    assert allocator.limit_arenas()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.open_memstream.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
held = threading.Barrier(8)
def work():
    block = libc.malloc(4096)
    held.wait()
    libc.free(block)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
libc.malloc_info(0, stream)
libc.fclose(stream)
print(len(re.findall(r'<heap nr="', buf.value.decode())))
"""


def arenas_after_threads(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, check=True, env={"PATH": "/usr/bin:/bin"})
    return int(done.stdout.strip())


@pytest.mark.skipif(allocator._LIBC is None or not hasattr(allocator._LIBC, "malloc_info"), reason="glibc only")
def test_threads_share_two_arenas_once_limited() -> None:
    assert arenas_after_threads("default") > allocator.DEFAULT_ARENAS  # one per thread, as the cap's reason
    assert arenas_after_threads("limit") <= allocator.DEFAULT_ARENAS


def test_an_operators_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert allocator.limit_arenas() is False
