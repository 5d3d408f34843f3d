"""Remote functions, ObjectRefs, get/put/wait, nested tasks, runtime context."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time

import ember
import numpy as np
import pytest
from ember import exceptions


@ember.remote
def add(a, b):
    return a + b


@ember.remote
def identity(x):
    return x


def test_remote_returns_refs_and_get_values(cluster):
    ref = add.remote(1, 2)
    assert isinstance(ref, ember.ObjectRef)
    assert ember.get(ref) == 3
    assert ember.get([add.remote(i, i) for i in range(20)]) == [
        2 * i for i in range(20)
    ]


def test_remote_with_options_and_kwargs(cluster):
    @ember.remote(num_cpus=0.5, max_retries=0)
    def f(a, *, b=10):
        return a * b

    assert ember.get(f.remote(2)) == 20
    assert ember.get(f.remote(2, b=3)) == 6
    assert ember.get(f.options(num_cpus=1, name="renamed").remote(3, b=3)) == 9


def test_calling_remote_function_directly_is_an_error(cluster):
    with pytest.raises(TypeError, match="remote"):
        add(1, 2)


def test_num_returns(cluster):
    @ember.remote(num_returns=3)
    def three():
        return 1, 2, 3

    refs = three.remote()
    assert len(refs) == 3
    assert ember.get(refs) == [1, 2, 3]
    two = three.options(num_returns=2)

    @ember.remote(num_returns=2)
    def pair(x):
        return x, x + 1

    assert ember.get(pair.remote(5)) == [5, 6]
    del two


def test_top_level_refs_resolve_nested_refs_stay_refs(cluster):
    inner = ember.put(41)

    @ember.remote
    def inspect(top, nested):
        assert not isinstance(top, ember.ObjectRef)
        assert isinstance(nested[0], ember.ObjectRef)
        return top + ember.get(nested[0])

    assert ember.get(inspect.remote(inner, [inner])) == 82


def test_chained_tasks_pass_refs(cluster):
    a = add.remote(1, 1)
    b = add.remote(a, 1)
    c = add.remote(b, a)
    assert ember.get(c) == 5


def test_tasks_submit_tasks_recursively(cluster):
    @ember.remote
    def fib(n):
        if n < 2:
            return n
        return sum(ember.get([fib.remote(n - 1), fib.remote(n - 2)]))

    # More concurrent blocked tasks than CPUs: blocked workers lend their CPU.
    assert ember.get(fib.remote(7), timeout=60) == 13


def test_more_blocked_parents_than_the_worker_pool_holds_still_finish(cluster):
    @ember.remote
    def child(i):
        return i

    @ember.remote
    def parent(i):
        return sum(ember.get([child.remote(i) for _ in range(10)]))

    # 40 parents at once on 2 CPUs: more than the pool's 4 x CPUs + 16
    # workers, each blocked in get while its children need workers too.
    assert ember.get([parent.remote(i) for i in range(40)], timeout=180) == [10 * i for i in range(40)]


@ember.remote
def _start_then_sleep():
    """A child of the side-by-side tests: when it started (it then sleeps 1 s)."""
    start = time.time()
    time.sleep(1.0)
    return start


def _two_children_after_one():
    """Run one child (registering the function; both workers exist after it), then two at once:
    their start times."""
    ember.get(_start_then_sleep.remote())
    return ember.get([_start_then_sleep.remote() for _ in range(2)])


def _assert_side_by_side(starts):
    first, second = starts
    assert abs(first - second) < 0.7, f"the children started {abs(first - second):.2f} s apart"


def test_the_children_of_a_blocked_parent_run_side_by_side(cluster):
    # Two CPUs: the parent holds one until it blocks in get and lends it. Its
    # children must then run at once on the two, not one behind the other on
    # one worker (they reach the node in the message that says it blocked).
    _assert_side_by_side(ember.get(ember.remote(_two_children_after_one).remote(), timeout=60))


def test_the_children_of_a_blocked_actor_call_run_side_by_side(cluster):
    # The same for an actor holding a CPU: blocked in get, it lends it.
    @ember.remote(num_cpus=1)
    class Parent:
        def run(self):
            return _two_children_after_one()

    actor = Parent.remote()
    starts = ember.get(actor.run.remote(), timeout=60)
    ember.kill(actor)
    _assert_side_by_side(starts)


def test_put_get_values(cluster):
    for value in [1, "text", b"bytes", {"a": [1, 2]}, None, (1, 2), np.arange(10)]:
        got = ember.get(ember.put(value))
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got, value)
        else:
            assert got == value


def test_put_of_a_ref_is_refused(cluster):
    with pytest.raises(TypeError):
        ember.put(ember.put(1))


def test_large_bytes_round_trip(cluster):
    data = os.urandom(3 << 20)
    assert ember.get(ember.put(data)) == data
    assert ember.get(identity.remote(data)) == data


def test_object_refs_hashable_comparable(cluster):
    ref = ember.put(1)
    same = ember.ObjectRef(ref.binary())
    assert ref == same and hash(ref) == hash(same)
    assert ref != ember.put(1)
    assert len({ref, same}) == 1
    assert ref.hex() in repr(ref)


def test_wait_splits_ready_and_pending(cluster):
    @ember.remote
    def sleepy(t):
        time.sleep(t)
        return t

    fast = [sleepy.remote(0) for _ in range(3)]
    slow = sleepy.remote(5)
    ember.get(fast)
    ready, pending = ember.wait(fast + [slow], num_returns=3, timeout=2)
    assert ready == fast and pending == [slow]
    ready, pending = ember.wait([slow], timeout=0.1)
    assert ready == [] and pending == [slow]
    # More ready than asked for: the first ones in input order; the rest keep their order.
    mixed = [fast[0], slow, fast[1], fast[2]]
    ready, pending = ember.wait(mixed, num_returns=2)
    assert ready == [fast[0], fast[1]] and pending == [slow, fast[2]]
    ready, pending = ember.wait(mixed, num_returns=3, timeout=0)
    assert ready == fast and pending == [slow]
    with pytest.raises(ValueError):
        ember.wait(fast, num_returns=4)
    with pytest.raises(ValueError, match="unique"):
        ember.wait([fast[0], slow, fast[0]])
    ember.cancel(slow, force=True)


def test_get_timeout(cluster):
    @ember.remote
    def slow():
        time.sleep(3)

    ref = slow.remote()
    t0 = time.monotonic()
    with pytest.raises(exceptions.GetTimeoutError):
        ember.get(ref, timeout=0.1)
    assert time.monotonic() - t0 < 2
    ember.cancel(ref, force=True)


def test_future_and_await(cluster):
    ref = add.remote(2, 3)
    fut = ref.future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=10) == 5

    async def main():
        return await add.remote(4, 5)

    assert asyncio.run(main()) == 9


def test_exceptions_carry_remote_traceback_and_type(cluster):
    @ember.remote(max_retries=0)
    def fails():
        raise ValueError("bad value 42")

    ref = fails.remote()
    with pytest.raises(ValueError) as info:
        ember.get(ref)
    err = info.value
    assert isinstance(err, exceptions.RayTaskError)
    assert isinstance(err, exceptions.RayError)
    text = str(err)
    assert "bad value 42" in text
    assert "Traceback" in text and "fails" in text
    # An error flows through dependent tasks.
    with pytest.raises(ValueError):
        ember.get(add.remote(ref, 1))


def test_runtime_context(cluster):
    ctx = ember.get_runtime_context()
    job = ctx.get_job_id()
    node = ctx.get_node_id()
    assert job and node
    assert ctx.get_task_id() is None

    @ember.remote
    def inside():
        c = ember.get_runtime_context()
        return c.get_job_id(), c.get_node_id(), c.get_task_id()

    tjob, tnode, ttask = ember.get(inside.remote())
    assert tjob == job and tnode == node and ttask


def test_cluster_and_available_resources(cluster):
    total = ember.cluster_resources()
    assert total["CPU"] == 2 and total["GPU"] == 2 and total["special"] == 1
    avail = ember.available_resources()
    assert avail["CPU"] <= 2
    nodes = ember.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nodes[0]["Resources"]["CPU"] == 2


def test_gpu_tasks_get_cuda_visible_devices(cluster):
    @ember.remote(num_gpus=1)
    def gpu_task():
        return os.environ.get("CUDA_VISIBLE_DEVICES"), ember.get_gpu_ids()

    visible, ids = ember.get(gpu_task.remote())
    assert visible in ("0", "1")
    assert ids == [int(visible)]

    @ember.remote(num_gpus=0.5)
    def half():
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    assert ember.get(half.remote()) in ("0", "1")
    assert ember.get_gpu_ids() == []


def test_custom_resources_route_work(cluster):
    @ember.remote(resources={"special": 1})
    def needs_special():
        return "ok"

    assert ember.get(needs_special.remote()) == "ok"


def test_four_tasks_on_two_cpus_run_two_at_a_time(cluster):
    @ember.remote(num_cpus=1)
    def interval():
        start = time.time()
        time.sleep(0.6)
        return start, time.time()

    spans = ember.get([interval.remote() for _ in range(4)], timeout=30)
    # At no instant do more than two intervals overlap; some two do overlap.
    points = sorted(
        [(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
        key=lambda p: (p[0], p[1]),
    )
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_is_initialized_and_reinit(cluster):
    assert ember.is_initialized()
    with pytest.raises(RuntimeError):
        ember.init()
    ember.init(ignore_reinit_error=True)


def test_quick_tasks_do_not_wait_behind_a_slow_one(cluster):
    @ember.remote
    def work(t):
        time.sleep(t)
        return time.time()

    slow = work.remote(4)
    time.sleep(0.1)
    start = time.time()
    quick = [work.remote(0.01) for _ in range(20)]
    ready, _ = ember.wait(quick, num_returns=len(quick), timeout=3)
    assert len(ready) == len(quick), "quick tasks were held behind the slow one"
    assert max(ember.get(quick)) - start < 3
    ember.get(slow)


def test_memory_is_a_schedulable_resource(cluster):
    total = ember.cluster_resources()
    assert total["memory"] > 0 and total["object_store_memory"] > 0

    @ember.remote(memory=100 * 1024 * 1024)
    def small_heap():
        return "fits"

    assert ember.get(small_heap.remote(), timeout=30) == "fits"

    @ember.remote(memory=1 << 60)
    def huge_heap():
        return "never"

    huge = huge_heap.remote()
    ready, _ = ember.wait([huge], timeout=0.5)
    assert ready == [], "a task asking for more memory than the node has stays pending"
    ember.cancel(huge)


_THREADS_DRIVER = """
import os
import ember
from ember._private import cpu_threads

ember.init(num_cpus=2)

@ember.remote
def threads():
    pools = cpu_threads.pool_threads()
    openblas = [n for path, n in pools.items() if "openblas" in path]
    return os.environ.get("OMP_NUM_THREADS"), openblas

@ember.remote(num_cpus=2)
class Holder:
    def threads(self):
        return ember.get(threads.options(num_cpus=0).remote()), os.environ.get("OMP_NUM_THREADS")

print("ONE", ember.get(threads.remote()))
print("TWO", ember.get(threads.options(num_cpus=2).remote()))
print("ONE AGAIN", ember.get([threads.remote() for _ in range(4)])[-1])
print("HALF", ember.get(threads.options(num_cpus=0.5).remote()))
holder = Holder.remote()
print("ACTOR", ember.get(holder.threads.remote())[1])
ember.shutdown()
"""


def _run_threads_driver(omp_num_threads):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp_num_threads is not None:
        env["OMP_NUM_THREADS"] = omp_num_threads
    out = subprocess.run([sys.executable, "-c", _THREADS_DRIVER], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    return out.stdout


def test_a_task_gets_omp_num_threads_and_blas_threads_for_the_cpus_it_holds():
    # As in Ray: OMP_NUM_THREADS is the CPUs a task holds (at least 1; an actor's
    # for its calls), and numpy's OpenBLAS pool is sized to match, so workers of
    # one-CPU tasks do not each run a thread per core.
    out = _run_threads_driver(None)
    assert "ONE ('1', [1])" in out, out
    assert "TWO ('2', [2])" in out, out
    assert "ONE AGAIN ('1', [1])" in out, out
    assert "HALF ('1', [1])" in out, out
    assert "ACTOR 2" in out, out


def test_omp_num_threads_set_by_the_user_is_kept():
    out = _run_threads_driver("3")
    pool = min(3, os.cpu_count())  # OpenBLAS runs at most a thread per core
    assert f"ONE ('3', [{pool}])" in out, out
    assert f"TWO ('3', [{pool}])" in out, out
    assert "ACTOR 3" in out, out


def test_a_worker_leaves_what_it_inherited_out_of_its_garbage_collections(cluster):
    # Workers are forked from a pre-imported process: what they inherited is
    # frozen (out of the cyclic GC's reach, so a collection neither copies
    # those shared pages nor spends time on them), and their own objects
    # are still collected.
    @ember.remote
    def gc_state():
        import gc

        class Cycle:
            pass

        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        del a, b
        return gc.isenabled(), gc.get_freeze_count(), gc.collect()

    enabled, frozen, collected = ember.get(gc_state.remote(), timeout=60)
    assert enabled
    assert frozen > 10_000, frozen
    assert collected >= 2
