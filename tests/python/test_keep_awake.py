"""The node's keep-awake threads (server/src/keep_awake.rs): one SCHED_IDLE
thread per CPU that spins for a moment after local traffic so that the next
hop of a sync call does not wait for an idle CPU to wake, and costs nothing
once traffic stops. Real node process, real driver, real workers."""

from __future__ import annotations

import os
import time

import ember
import pytest
from ember_test_support import NodeProcess

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")

TICK = os.sysconf("SC_CLK_TCK")


def awake_threads(pid: int) -> list[int]:
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().startswith("ember-awake-"):
                    tids.append(int(tid))
        except OSError:
            continue
    return tids


def thread_cpu_s(pid: int, tid: int) -> float:
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@pytest.fixture
def node(session_root, request):
    args = ["--head", "--num-cpus", "2", *getattr(request, "param", [])]
    proc = NodeProcess(args, str(session_root))
    if ember.is_initialized():
        ember.shutdown()
    ember.init(address=proc.address)
    yield proc
    ember.shutdown()
    proc.stop()


@ember.remote
def noop():
    return None


def test_one_idle_priority_thread_per_cpu_spins_after_traffic_and_sleeps_when_idle(node):
    pid = node.proc.pid
    tids = awake_threads(pid)
    assert len(tids) == len(os.sched_getaffinity(pid)), "one keep-awake thread per CPU of the node"
    for tid in tids:
        assert os.sched_getscheduler(tid) == os.SCHED_IDLE, "they must never take CPU from tasks"

    before = sum(thread_cpu_s(pid, t) for t in tids)
    deadline = time.monotonic() + 1.5
    calls = 0
    while time.monotonic() < deadline:
        assert ember.get(noop.remote()) is None
        calls += 1
    spun = sum(thread_cpu_s(pid, t) for t in tids) - before
    assert calls > 0 and spun > 0, "during sync calls the spare CPU keeps spinning"

    # Idle: once the window (2 ms) has passed the threads sleep, and the node
    # as a whole uses (next to) no CPU.
    time.sleep(0.5)
    threads_before = sum(thread_cpu_s(pid, t) for t in tids)
    node_before = process_cpu_s(pid)
    time.sleep(3.0)
    assert sum(thread_cpu_s(pid, t) for t in tids) - threads_before <= 1.0 / TICK
    assert process_cpu_s(pid) - node_before < 0.1


@pytest.mark.parametrize("node", [["--keep-awake-us", "0"]], indirect=True)
def test_keep_awake_us_zero_starts_no_threads(node):
    assert ember.get([noop.remote() for _ in range(20)]) == [None] * 20
    assert awake_threads(node.proc.pid) == []
