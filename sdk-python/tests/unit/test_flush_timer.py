import threading
import time

import pytest

from ember import exceptions
from ember._private import flush_timer
from ember._private.flush_timer import FlushTimer


@pytest.fixture(params=["timerfd", "event"])
def make_timer(request, monkeypatch):
    if request.param == "event":
        monkeypatch.setattr(flush_timer, "_libc_timerfd", lambda: None)
    timers = []

    def make(fn, delay, **kw):
        t = FlushTimer(fn, delay, "test-flusher", **kw)
        assert t.uses_timerfd == (request.param == "timerfd")
        timers.append(t)
        return t

    yield make
    for t in timers:
        t.close()


def test_armed_timer_runs_fn_after_the_delay(make_timer):
    fired = threading.Event()
    times = []

    def fn():
        times.append(time.monotonic())
        fired.set()

    t = make_timer(fn, 0.02)
    start = time.monotonic()
    t.arm()
    assert fired.wait(5)
    assert times[0] - start >= 0.015
    assert not t.armed
    # It can be armed again after it ran.
    fired.clear()
    t.arm()
    assert fired.wait(5)
    assert len(times) == 2


def test_arming_again_keeps_the_first_deadline(make_timer):
    fired = threading.Event()
    t = make_timer(fired.set, 0.3)
    start = time.monotonic()
    t.arm()
    time.sleep(0.2)
    t.arm()  # already armed: not pushed back to 0.5 s
    assert fired.wait(5)
    assert time.monotonic() - start < 0.45


def test_disarmed_timerfd_never_runs_fn():
    calls = []
    t = FlushTimer(lambda: calls.append(1), 0.02, "test-flusher")
    if not t.uses_timerfd:
        pytest.skip("no timerfd here")
    try:
        for _ in range(50):
            t.arm()
            t.disarm()
        time.sleep(0.1)
        assert calls == []
        assert t._thread is not None and t._thread.is_alive()
    finally:
        t.close()


def test_close_ends_the_thread(make_timer):
    t = make_timer(lambda: None, 0.01)
    t.arm()
    time.sleep(0.05)
    thread = t._thread
    t.close()
    thread.join(5)
    assert not thread.is_alive()
    t.arm()  # a no-op once closed
    assert not t.armed


def test_a_stop_exception_ends_the_thread_and_others_are_survived(make_timer):
    runs = []

    def fn():
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("logged, not fatal")
        raise exceptions.LocalRayletDiedError("gone")

    t = make_timer(fn, 0.005, stop_on=(exceptions.LocalRayletDiedError,))
    t.arm()
    deadline = time.monotonic() + 5
    while len(runs) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)
    t.arm()
    t._thread.join(5)
    assert len(runs) == 2 and not t._thread.is_alive()
