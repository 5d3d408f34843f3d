"""The node's keep-awake threads (server/src/keep_awake.rs): for a moment
after local traffic, idle CPUs are kept from halting so that the next hop of
a sync call does not wait for one to wake, and nothing is spent once traffic
stops. Two ways: one SCHED_IDLE thread per CPU that spins (`spin`), or one
thread holding a 0 µs CPU latency request on /dev/cpu_dma_latency so idle
CPUs poll in the kernel (`poll`, where the device opens). Real node process,
real driver, real workers."""

from __future__ import annotations

import os
import time

import ember
import pytest
from ember_test_support import NodeProcess

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")

TICK = os.sysconf("SC_CLK_TCK")
LATENCY_DEVICE = "/dev/cpu_dma_latency"


def can_hold_latency_request() -> bool:
    try:
        os.close(os.open(LATENCY_DEVICE, os.O_WRONLY))
        return True
    except OSError:
        return False


def latency_limit_us() -> int:
    """The CPU latency limit now in force (the smallest request held)."""
    with open(LATENCY_DEVICE, "rb") as f:
        return int.from_bytes(f.read(4), "little", signed=True)


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
    param = getattr(request, "param", [])
    env = {}
    if param and param[0].startswith("EMBER_KEEP_AWAKE_MODE="):
        env["EMBER_KEEP_AWAKE_MODE"] = param[0].split("=", 1)[1]
        param = param[1:]
    args = ["--head", "--num-cpus", "2", *param]
    proc = NodeProcess(args, str(session_root), env=env)
    if ember.is_initialized():
        ember.shutdown()
    ember.init(address=proc.address)
    yield proc
    ember.shutdown()
    proc.stop()


@ember.remote
def noop():
    return None


@pytest.mark.parametrize("node", [["EMBER_KEEP_AWAKE_MODE=spin"]], indirect=True)
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


@pytest.mark.skipif(not can_hold_latency_request(), reason=f"{LATENCY_DEVICE} does not open for writing here")
@pytest.mark.parametrize("node", [["EMBER_KEEP_AWAKE_MODE=poll"]], indirect=True)
def test_poll_mode_holds_a_zero_latency_request_during_traffic_and_lifts_it_when_idle(node):
    pid = node.proc.pid
    tids = awake_threads(pid)
    assert len(tids) == 1, "one thread holds the request (no spinners)"
    devices = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert LATENCY_DEVICE in devices, "the node keeps the latency device open"

    # During sync calls the limit in force is 0 µs: idle CPUs poll.
    seen = set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert ember.get(noop.remote()) is None
        seen.add(latency_limit_us())
    assert 0 in seen, f"no 0 µs request seen during traffic: {seen}"

    # Idle: the window (2 ms) passes, the request goes back to no limit,
    # and the node as a whole uses (next to) no CPU.
    time.sleep(0.5)
    assert latency_limit_us() > 1_000_000, "the request is lifted once traffic stops"
    node_before = process_cpu_s(pid)
    time.sleep(3.0)
    assert process_cpu_s(pid) - node_before < 0.1
