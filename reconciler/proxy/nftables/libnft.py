"""``Libnft``: nftables transactions through libnftables in this process, on a thread of its own.

Why in-process: a one-endpoint change is five nft commands, but one ``nft -f -`` per change
costs a fork+exec and, worse, nft building its cache of the whole table (every chain, map
and set of 1,000 Services) from the kernel before it can resolve a name — every time.
A long-lived libnftables context keeps that cache and only re-reads it when the kernel's
ruleset generation moved under it (someone else changed the ruleset). Measured on the
bench (1,000 Services x 3): a partial update 28 ms with ``nft -f -`` against ~5 ms here.

Why hand-written ctypes: libnftables' own Python binding (``python3-nftables`` in Debian)
is a module for the system interpreter only, not on PyPI; the four C calls we need
(``nft_ctx_new``, ``nft_ctx_buffer_output``/``_error``, ``nft_run_cmd_from_buffer``,
``nft_ctx_get_error_buffer``) are stable since nftables 0.9 and the library ships in
``libnftables1``, which the ``nftables`` package that gives ``nft`` depends on.

Why a thread: a network namespace belongs to a thread, not a process. With ``netns`` the
worker thread enters ``/run/netns/NAME`` once (``setns``) and every transaction runs
there — the tests and the benchmark drive a scratch namespace through the same code the
node agent uses on its host. A libnftables context is not meant for several threads at
once; one thread owning it settles that too. If the library cannot be loaded,
``Libnft.load`` returns None and the caller runs ``nft -f -`` as before.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

CLONE_NEWNET = 0x40000000


class LibnftError(RuntimeError):
    """libnftables refused a transaction; the message is its error output."""


def _library() -> Any | None:
    for name in ("libnftables.so.1", ctypes.util.find_library("nftables")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        return lib
    return None


class Libnft:
    """One libnftables context on one worker thread (inside ``netns`` when given)."""

    def __init__(self, lib: Any, netns: str | None) -> None:
        self._lib = lib
        self._netns = netns
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._ctx: int | None = None
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="libnftables", daemon=True)
        self._thread.start()
        started.result()  # a namespace that cannot be entered fails here, in the caller

    @classmethod
    def load(cls, netns: str | None = None) -> Libnft | None:
        """A context, or None when libnftables is not installed (the caller uses ``nft``)."""
        lib = _library()
        return cls(lib, netns) if lib is not None else None

    def _serve(self, started: Future[None]) -> None:
        try:
            if self._netns is not None:
                fd = os.open(f"/run/netns/{self._netns}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into /run/netns/{self._netns}: {os.strerror(err)}")
                finally:
                    os.close(fd)
            ctx = self._lib.nft_ctx_new(0)
            if not ctx:
                raise LibnftError("nft_ctx_new failed")
            self._lib.nft_ctx_buffer_output(ctx)
            self._lib.nft_ctx_buffer_error(ctx)
            self._ctx = ctx
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of __init__
            started.set_exception(exc)
            return
        started.set_result(None)
        while (job := self._jobs.get()) is not None:
            call, future = job
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of run()
                future.set_exception(exc)
        self._lib.nft_ctx_free(ctx)

    def _run_here(self, text: str) -> None:
        if self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode()) != 0:
            message = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
            raise LibnftError(message.strip() or "nft refused the transaction")

    def run(self, text: str, *, timeout: float = 30.0) -> None:
        """Apply ``text`` (nft's file syntax) as one transaction; LibnftError if refused."""
        future: Future[None] = Future()
        self._jobs.put((lambda: self._run_here(text), future))
        future.result(timeout=timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=5)
