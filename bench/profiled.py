#!/usr/bin/env python3
"""`reconciler` with a sampling profiler over every thread, for a benchmark that asks where the daemon's CPU goes.

Why by hand: py-spy is not installed here; pyinstrument samples one thread, and cProfile
(deterministic, per thread) slowed the daemon so much that its watch streams stalled.
This sampler is a thread that, every ``INTERVAL`` seconds, reads each thread's own CPU
clock (``time.pthread_getcpuclockid``) and charges the CPU that thread used since the last
sample to the stack it is in now (``sys._current_frames``): a thread blocked in ``recv``
costs nothing, one in a TLS handshake or a JSON encode is charged there. The leaf frame
gets "own" time, every distinct function on the stack "cumulative" time.

``SIGUSR1`` clears the counts (the measured window starts); at exit the report goes to
``$RECONCILER_BENCH_PROFILE`` (a text file).
"""
from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

INTERVAL = 0.002
ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _thread_clock(tid: int) -> int:
    """The CPU clock of thread ``tid`` (Linux: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). Not
    ``time.pthread_getcpuclockid``: it reads the pthread's memory, freed once a thread ends
    (the API's connection threads come and go); a dead tid here is only EINVAL."""
    return ((~tid) << 3) | 6


class Sampler:
    def __init__(self) -> None:
        self.own: Counter[str] = Counter()
        self.cumulative: Counter[str] = Counter()
        self.total = 0
        self._last: dict[int, int] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self.own.clear()
            self.cumulative.clear()
            self.total = 0

    @staticmethod
    def _where(frame: FrameType) -> str:
        code = frame.f_code
        file = code.co_filename.split("/site-packages/")[-1].replace(ROOT, "").replace("/usr/lib/python3.11/", "")
        return f"{file}:{code.co_firstlineno}({code.co_name})"

    def _run(self) -> None:
        me = threading.get_ident()
        while True:
            time.sleep(INTERVAL)
            frames = sys._current_frames()
            natives = {ident: t.native_id for ident, t in dict(threading._active).items()}  # type: ignore[attr-defined]
            for ident, frame in frames.items():
                tid = natives.get(ident)
                if ident == me or tid is None:
                    continue
                try:
                    used = time.clock_gettime_ns(_thread_clock(tid))
                except OSError:
                    continue  # the thread has ended since
                delta = used - self._last.get(ident, used)
                self._last[ident] = used
                if delta <= 0:
                    continue
                stack: list[str] = []
                f: FrameType | None = frame
                while f is not None:
                    stack.append(self._where(f))
                    f = f.f_back
                with self._lock:
                    self.total += delta
                    self.own[stack[0]] += delta
                    for name in set(stack):
                        self.cumulative[name] += delta

    def report(self, *, top: int = 45) -> str:
        with self._lock:
            lines = [f"sampled CPU: {self.total / 1e9:.2f} s over all threads (interval {INTERVAL * 1000:g} ms)"]
            for label, counts in (("own", self.own), ("cumulative", self.cumulative)):
                lines.append(f"-- by {label} CPU seconds")
                lines += [f"{ns / 1e9:9.2f}  {name}" for name, ns in counts.most_common(top)]
        return "\n".join(lines)


def main() -> None:
    path = os.environ["RECONCILER_BENCH_PROFILE"]
    sampler = Sampler()
    signal.signal(signal.SIGUSR1, lambda *_: sampler.clear())
    atexit.register(lambda: Path(path).write_text(sampler.report()))
    sys.argv = ["reconciler", *sys.argv[1:]]
    sys.path.insert(0, ROOT)
    sampler.start()
    runpy.run_module("reconciler", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
