"""``FlushTimer``: run a flush in a background thread a short delay after it is
armed, unless it is disarmed first.

The worker defers a finished task's result while more received tasks wait
(they usually end within microseconds and their results go out together),
and the driver holds a burst of submissions; each must still go out soon if
the next task, or the next submission, is slow in coming. A thread that
sleeps the delay after every arming wakes twice per batch (once when armed,
once after its sleep) even though the batch nearly always went out before
the delay. Those wake-ups cost more than the tasks themselves when tasks are
empty (nested tasks: over half the workers' context switches).

On Linux the timer is a ``timerfd``: ``arm`` and ``disarm`` are one
``timerfd_settime`` each, and the thread, blocked reading the descriptor,
wakes only when the delay actually passes while armed. Elsewhere (or if
``timerfd`` cannot be used) the thread waits on an ``Event`` and sleeps the
delay, as before.

``fn`` may run after a ``disarm`` that raced with expiry, or run finding
nothing to flush; callers' flushes are idempotent and thread-safe.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("ember")

_CLOCK_MONOTONIC = 1
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


@functools.cache
def _libc_timerfd():
    """``(timerfd_create, timerfd_settime)`` from libc, or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create = libc.timerfd_create
        settime = libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = (ctypes.c_int, ctypes.c_int)
    create.restype = ctypes.c_int
    settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p)
    settime.restype = ctypes.c_int
    return create, settime


class FlushTimer:
    """Calls ``fn()`` in a daemon thread ``delay`` seconds after ``arm()``,
    unless ``disarm()`` is called first. ``arm`` while armed keeps the
    earlier deadline. An exception from ``fn`` is logged, one of the
    ``stop_on`` classes ends the thread."""

    def __init__(self, fn: Callable[[], None], delay: float, name: str,
                 stop_on: tuple[type[BaseException], ...] = ()):
        self._fn = fn
        self._delay = delay
        self._name = name
        self._stop_on = stop_on
        self.armed = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._settime = None
        self._event: threading.Event | None = None
        funcs = _libc_timerfd()
        if funcs is not None:
            create, settime = funcs
            fd = create(_CLOCK_MONOTONIC, _TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                self._settime = settime
                sec = int(delay)
                self._arm_spec = _Itimerspec(_Timespec(0, 0), _Timespec(sec, max(1, int((delay - sec) * 1e9))))
                self._disarm_spec = _Itimerspec(_Timespec(0, 0), _Timespec(0, 0))
        if self._settime is None:
            self._event = threading.Event()

    @property
    def uses_timerfd(self) -> bool:
        return self._settime is not None

    def arm(self) -> None:
        """Run ``fn`` after the delay (unless already armed: the earlier deadline holds)."""
        if self.armed or self._closed:
            return
        self.armed = True
        if self._thread is None:
            self._start()
        if self._settime is not None:
            self._settime(self._fd, 0, self._arm_spec, None)
        else:
            self._event.set()

    def disarm(self) -> None:
        """Cancel the pending run (a no-op when not armed; the fallback thread still runs ``fn``)."""
        if self.armed and not self._closed:
            self.armed = False
            if self._settime is not None:
                self._settime(self._fd, 0, self._disarm_spec, None)

    def close(self) -> None:
        """Stop the thread (after any run in progress) and release the descriptor."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            return
        if self._settime is not None:
            self._settime(self._fd, 0, _Itimerspec(_Timespec(0, 0), _Timespec(0, 1)), None)
        else:
            self._event.set()

    def _start(self) -> None:
        target = self._run_timerfd if self._settime is not None else self._run_event
        self._thread = threading.Thread(target=target, name=self._name, daemon=True)
        self._thread.start()

    def _fire(self) -> bool:
        """Run ``fn``; False when the thread should end."""
        if self._closed:
            return False
        # Cleared before fn runs: an arm() from here on schedules a new run,
        # so nothing deferred after fn took its snapshot is left behind.
        self.armed = False
        try:
            self._fn()
        except self._stop_on:
            return False
        except Exception:
            logger.debug("%s: flush failed", self._name, exc_info=True)
        return True

    def _run_timerfd(self) -> None:
        fd = self._fd
        while True:
            try:
                os.read(fd, 8)  # blocks (GIL released) until the armed timer expires
            except InterruptedError:
                continue
            except OSError:
                return
            if not self._fire():
                os.close(fd)
                return

    def _run_event(self) -> None:
        event = self._event
        while True:
            event.wait()
            time.sleep(self._delay)
            event.clear()
            if not self._fire():
                return
