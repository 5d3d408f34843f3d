"""Copies of large buffers into shared memory on several threads.

One thread copies at most about 7 GB/s on this kind of machine, and the
other CPUs usually sit idle while a driver or worker puts a large value (the
node is waiting for it). Copies of ``PARALLEL_BYTES`` or more are split into
one contiguous part per CPU this process may run on (at most
``MAX_THREADS``); numpy's ``copyto`` releases the GIL, so the parts run at
once. Ray's object store client does the same (its ``memcopy_threads``).
"""

from __future__ import annotations

import os
import threading

PARALLEL_BYTES = 8 << 20
MAX_THREADS = 8
_ALIGN = 4096

_lock = threading.Lock()
_pool = None
_threads = None


def threads() -> int:
    """How many threads a large copy uses here."""
    global _threads
    if _threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        _threads = max(1, min(cpus, MAX_THREADS))
    return _threads


def _executor():
    global _pool
    with _lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(threads() - 1, thread_name_prefix="ember-memcopy")
        return _pool


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads: start afresh.
    global _pool, _threads, _lock
    _pool, _threads, _lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def copy_into(dst: memoryview, src) -> None:
    """``dst[:] = src`` for a writable byte view ``dst`` and a C-contiguous
    buffer ``src`` of the same length, on several threads when large."""
    n = dst.nbytes
    parts = threads()
    if n < PARALLEL_BYTES or parts < 2:
        dst[:] = src
        return
    try:
        import numpy as np
    except ImportError:
        dst[:] = src
        return
    d = np.frombuffer(dst, dtype=np.uint8)
    s = np.frombuffer(src, dtype=np.uint8)
    step = -(-n // parts)
    step += -step % _ALIGN
    bounds = [(i, min(i + step, n)) for i in range(0, n, step)]
    pool = _executor()
    futures = [pool.submit(np.copyto, d[a:b], s[a:b]) for a, b in bounds[1:]]
    try:
        a, b = bounds[0]
        np.copyto(d[a:b], s[a:b])
    finally:
        for future in futures:
            future.result()
