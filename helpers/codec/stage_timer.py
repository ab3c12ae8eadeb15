"""Seconds per coding stage, for the benchmark's stage table (``python -m helpers benchmark --stages``).

Off unless a ``recording()`` is active (one flag test per decorated call otherwise). While one is, each function
decorated with ``stage(name)`` adds its seconds under ``name``; a stage that runs on the tile workers adds the
seconds of every worker, so it reads as thread-seconds, and stages that overlap (the hyper-synthesis on the
workers while rANS decodes) add up to more than the wall time.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time

_totals: dict[str, float] | None = None
_lock = threading.Lock()


def stage(name: str):
    def decorate(fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if _totals is None:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with _lock:
                    _totals[name] = _totals.get(name, 0.0) + time.perf_counter() - start

        return timed

    return decorate


@contextlib.contextmanager
def recording():
    """Collects the stages' seconds into the dict it yields (``"total"``: the wall time of the block)."""
    global _totals
    _totals, start = {}, time.perf_counter()
    try:
        yield _totals
    finally:
        _totals["total"] = time.perf_counter() - start
        _totals = None
