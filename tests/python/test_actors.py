"""Actors on a real node: creation, ordered method calls, handles passed
around, named and detached actors, kills and restarts, async and threaded
actors, concurrency groups, failures and the runtime context."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import ember
import pytest
from ember import exceptions
from ember_test_support import EMBER_BIN, run_driver


@ember.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, by=1):
        self.n += by
        return self.n

    def value(self):
        return self.n

    @ember.method(num_returns=2)
    def pair(self):
        return self.n, -self.n

    @ember.method(num_returns=0)
    def reset(self):
        self.n = 0

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    def crash(self):
        os._exit(1)


@ember.remote
def bump_in_task(counter):
    return ember.get(counter.inc.remote())


def _kill(*handles):
    for h in handles:
        ember.kill(h)


def test_counter(cluster):
    c = Counter.remote()
    assert ember.get([c.inc.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
    c10 = Counter.remote(10)
    assert ember.get(c10.inc.remote(by=5), timeout=60) == 15
    _kill(c, c10)


def test_one_callers_calls_run_in_order(cluster):
    @ember.remote
    class Log:
        def __init__(self):
            self.items = []

        def add(self, i):
            self.items.append(i)
            return i

        def items_seen(self):
            return self.items

    log = Log.remote()
    refs = [log.add.remote(i) for i in range(1000)]
    assert ember.get(log.items_seen.remote(), timeout=60) == list(range(1000))
    assert ember.get(refs, timeout=60) == list(range(1000))
    _kill(log)


def test_handles_passed_to_tasks_and_actors(cluster):
    c = Counter.remote()

    @ember.remote
    class Caller:
        def call(self, counter):
            return ember.get(counter.inc.remote(by=10))

        def nested(self, counters):
            return [ember.get(h.value.remote()) for h in counters]

    assert ember.get(bump_in_task.remote(c), timeout=60) == 1
    caller = Caller.remote()
    assert ember.get(caller.call.remote(c), timeout=60) == 11
    # Inside a container too (pickled with the argument).
    assert ember.get(caller.nested.remote([c, c]), timeout=60) == [11, 11]
    assert ember.get(c.value.remote(), timeout=60) == 11
    _kill(c, caller)


def test_num_returns(cluster):
    c = Counter.remote(4)
    a, b = c.pair.remote()
    assert ember.get([a, b], timeout=60) == [4, -4]
    assert ember.get(c.pair.options(num_returns=1).remote(), timeout=60) == (4, -4)
    assert c.reset.remote() is None
    assert ember.get(c.value.remote(), timeout=60) == 0
    _kill(c)


def test_named_actors_get_if_exists_and_namespaces(cluster):
    a = Counter.options(name="named-counter").remote()
    assert ember.get(a.inc.remote(), timeout=60) == 1
    same = ember.get_actor("named-counter")
    assert same == a
    assert ember.get(same.inc.remote(), timeout=60) == 2
    with pytest.raises(ValueError, match="already taken"):
        Counter.options(name="named-counter").remote()
    existing = Counter.options(name="named-counter", get_if_exists=True).remote()
    assert existing == a and ember.get(existing.value.remote(), timeout=60) == 2
    fresh = Counter.options(name="fresh-counter", get_if_exists=True).remote(7)
    assert ember.get(fresh.value.remote(), timeout=60) == 7

    # Namespaces: the same name in another namespace is another actor.
    other = Counter.options(name="named-counter", namespace="other-ns").remote(100)
    assert other != a
    assert ember.get(ember.get_actor("named-counter", namespace="other-ns").value.remote(),
                     timeout=60) == 100
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ember.get_actor("fresh-counter", namespace="other-ns")
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ember.get_actor("no-such-actor")
    _kill(a, fresh, other)


def _ember(*args, env=None, timeout=60):
    return subprocess.run(check=False, args=[EMBER_BIN, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_detached_actor_outlives_its_driver(tmp_path):
    env = dict(os.environ, EMBER_TMPDIR=str(tmp_path / "root"), EMBER_PYTHON=sys.executable)
    started = _ember("start", "--head", "--num-cpus", "2", env=env)
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        first = run_driver(
            """
            import ember
            ember.init(address="auto")

            @ember.remote
            class Store:
                def __init__(self):
                    self.data = {}

                def put(self, key, value):
                    self.data[key] = value
                    return len(self.data)

                def get(self, key):
                    return self.data.get(key)

            s = Store.options(name="store", namespace="ns", lifetime="detached").remote()
            print("PUT", ember.get(s.put.remote("a", 41), timeout=60))
            ember.shutdown()
            """,
            env=env,
        )
        assert "PUT 1" in first.stdout, first.stdout + first.stderr
        second = run_driver(
            """
            import ember
            ember.init(address="auto")
            s = ember.get_actor("store", namespace="ns")
            print("GOT", ember.get(s.get.remote("a"), timeout=60))
            print("PUT", ember.get(s.put.remote("b", 2), timeout=60))
            ember.kill(s)
            ember.shutdown()
            """,
            env=env,
        )
        assert "GOT 41" in second.stdout and "PUT 2" in second.stdout, second.stdout + second.stderr
    finally:
        stopped = _ember("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr


def test_actor_dies_with_its_driver(cluster):
    out = run_driver(
        f"""
        import ember
        ember.init(address={cluster["address"]!r})

        @ember.remote
        class Temp:
            def ping(self):
                return "pong"

        t = Temp.options(name="temp", namespace="dies-with-driver").remote()
        print("PING", ember.get(t.ping.remote(), timeout=60))
        ember.shutdown()
        """
    )
    assert "PING pong" in out.stdout, out.stdout + out.stderr
    deadline = time.time() + 30
    while True:
        try:
            t = ember.get_actor("temp", namespace="dies-with-driver")
            ember.get(t.ping.remote(), timeout=30)
        except (ValueError, exceptions.ActorDiedError):
            break
        assert time.time() < deadline, "the actor outlived its driver"
        time.sleep(0.2)


def test_kill_no_restart_fails_calls_and_never_hangs(cluster):
    c = Counter.remote()
    assert ember.get(c.inc.remote(), timeout=60) == 1
    in_flight = c.sleep.remote(60)
    queued = c.inc.remote()
    time.sleep(0.5)
    ember.kill(c)
    with pytest.raises(exceptions.RayActorError):
        ember.get(in_flight, timeout=30)
    with pytest.raises(exceptions.RayActorError):
        ember.get(queued, timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        ember.get(c.inc.remote(), timeout=30)


def test_kill_with_restart(cluster):
    c = Counter.options(max_restarts=1).remote(5)
    assert ember.get([c.inc.remote() for _ in range(3)], timeout=60) == [6, 7, 8]
    ember.kill(c, no_restart=False)
    # Calls made after the kill wait for the restart; __init__ ran again
    # with the same arguments.
    assert ember.get(c.inc.remote(), timeout=60) == 6
    assert ember.get(c.inc.remote(), timeout=60) == 7
    _kill(c)


def test_crash_in_method_restarts_or_dies(cluster):
    c = Counter.options(max_restarts=1).remote()
    assert ember.get(c.inc.remote(), timeout=60) == 1
    with pytest.raises(exceptions.RayActorError):
        ember.get(c.crash.remote(), timeout=60)
    assert ember.get(c.inc.remote(), timeout=60) == 1  # state reset by the restart
    # Its one restart is used up: the next crash is the end.
    with pytest.raises(exceptions.RayActorError):
        ember.get(c.crash.remote(), timeout=60)
    with pytest.raises(exceptions.ActorDiedError):
        ember.get(c.inc.remote(), timeout=60)

    d = Counter.remote()
    with pytest.raises(exceptions.RayActorError):
        ember.get(d.crash.remote(), timeout=60)
    with pytest.raises(exceptions.ActorDiedError):
        ember.get(d.inc.remote(), timeout=60)


def test_max_task_retries_resends_the_call_in_flight(cluster, tmp_path):
    @ember.remote(max_restarts=1, max_task_retries=1)
    class Flaky:
        def crash_once(self, path):
            with open(path, "a") as f:
                f.write("x")
            if os.path.getsize(path) == 1:
                os._exit(1)
            return "survived"

    f = Flaky.remote()
    assert ember.get(f.crash_once.remote(str(tmp_path / "attempts")), timeout=60) == "survived"
    assert (tmp_path / "attempts").read_text() == "xx"
    _kill(f)


def test_async_actor_runs_calls_concurrently(cluster):
    @ember.remote
    class Napper:
        async def nap(self, i):
            await asyncio.sleep(0.5)
            return i

    a = Napper.remote()
    assert ember.get(a.nap.remote(-1), timeout=60) == -1  # started
    start = time.time()
    assert ember.get([a.nap.remote(i) for i in range(100)], timeout=60) == list(range(100))
    assert time.time() - start < 10
    _kill(a)


def test_threaded_actor_overlaps_calls(cluster):
    @ember.remote(max_concurrency=4)
    class Threaded:
        def __init__(self):
            self.lock = threading.Lock()
            self.running = 0
            self.peak = 0

        def work(self, seconds):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            time.sleep(seconds)
            with self.lock:
                self.running -= 1
            return threading.current_thread().name

        def peak_seen(self):
            return self.peak

    t = Threaded.remote()
    ember.get(t.work.remote(0), timeout=60)
    start = time.time()
    ember.get([t.work.remote(1.0) for _ in range(4)], timeout=60)
    assert time.time() - start < 3.0
    assert ember.get(t.peak_seen.remote(), timeout=60) == 4
    _kill(t)


def _peaks_actor(is_async):
    if is_async:
        @ember.remote(concurrency_groups={"io": 1, "compute": 2})
        class Grouped:
            def __init__(self):
                self.running = {}
                self.peak = {}

            async def _run(self, group):
                self.running[group] = self.running.get(group, 0) + 1
                self.peak[group] = max(self.peak.get(group, 0), self.running[group])
                await asyncio.sleep(0.3)
                self.running[group] -= 1

            @ember.method(concurrency_group="io")
            async def io(self):
                await self._run("io")

            @ember.method(concurrency_group="compute")
            async def compute(self):
                await self._run("compute")

            async def default(self):
                await self._run("default")

            def peaks(self):
                return self.peak

        return Grouped.remote()

    @ember.remote(concurrency_groups={"io": 2})
    class ThreadGrouped:
        def __init__(self):
            self.lock = threading.Lock()
            self.running = {}
            self.peak = {}

        def _run(self, group):
            with self.lock:
                self.running[group] = self.running.get(group, 0) + 1
                self.peak[group] = max(self.peak.get(group, 0), self.running[group])
            time.sleep(0.3)
            with self.lock:
                self.running[group] -= 1

        @ember.method(concurrency_group="io")
        def io(self):
            self._run("io")

        def compute(self):
            self._run("compute")

        def default(self):
            self._run("default")

        def peaks(self):
            return self.peak

    return ThreadGrouped.remote()


@pytest.mark.parametrize("is_async", [True, False])
def test_concurrency_groups(cluster, is_async):
    g = _peaks_actor(is_async)
    refs = []
    for _ in range(4):
        refs += [g.io.remote(), g.compute.remote(), g.default.remote()]
    ember.get(refs, timeout=60)
    peaks = ember.get(g.peaks.remote(), timeout=60)
    if is_async:
        assert peaks["io"] == 1 and peaks["compute"] == 2 and peaks["default"] >= 3, peaks
    else:
        # The default group of a sync actor has max_concurrency 1: compute and
        # default share its one thread.
        assert peaks["io"] == 2 and peaks["compute"] == 1 and peaks["default"] == 1, peaks
    # A call can be moved to another group.
    ember.get([g.default.options(concurrency_group="io").remote() for _ in range(2)], timeout=60)
    _kill(g)


def test_init_error_surfaces_on_every_call(cluster):
    @ember.remote
    class BadInit:
        def __init__(self):
            raise ZeroDivisionError("init failed")

        def m(self):
            return 1

    b = BadInit.remote()
    for _ in range(3):
        with pytest.raises(ZeroDivisionError, match="init failed"):
            ember.get(b.m.remote(), timeout=60)
    _kill(b)


def test_infeasible_actor_stays_pending_and_is_reported(cluster):
    from ember._private import state

    c = Counter.options(resources={"tpu": 4}).remote()
    ref = c.inc.remote()
    ready, pending = ember.wait([ref], timeout=1.0)
    assert ready == [] and pending == [ref]
    actors = {a.actor_id: a for a in state.runtime.cluster_status().actors}
    from ember.v1 import local_pb2

    assert actors[c._actor_id.binary()].state == local_pb2.PENDING
    out = subprocess.run(check=False, args=[EMBER_BIN, "status", "--address", cluster["address"]],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "infeasible" in out.stdout.lower() and "tpu: 4" in out.stdout, out.stdout
    assert "Counter" in out.stdout, out.stdout
    ember.kill(c)
    with pytest.raises(exceptions.ActorDiedError):
        ember.get(ref, timeout=30)


def test_missing_method_is_an_attribute_error(cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no_such_method"):
        c.no_such_method.remote()
    with pytest.raises(TypeError, match="Actors cannot be instantiated directly"):
        Counter()
    with pytest.raises(TypeError, match="inc.remote"):
        c.inc()
    _kill(c)


def test_gpu_actor_gets_cuda_visible_devices(cluster):
    @ember.remote(num_gpus=1)
    class OnGpu:
        def env(self):
            return os.environ.get("CUDA_VISIBLE_DEVICES"), ember.get_gpu_ids()

    g = OnGpu.remote()
    visible, ids = ember.get(g.env.remote(), timeout=60)
    assert visible in ("0", "1") and ids == [int(visible)]
    # Twice in a row: the actor keeps its GPU.
    assert ember.get(g.env.remote(), timeout=60) == (visible, ids)
    _kill(g)


def test_runtime_context_in_actors(cluster):
    @ember.remote
    class Me:
        def ids(self):
            ctx = ember.get_runtime_context()
            return ctx.get_actor_id(), ctx.current_actor

    m = Me.remote()
    actor_hex, handle = ember.get(m.ids.remote(), timeout=60)
    assert actor_hex == m._actor_id.hex() and handle == m
    assert repr(handle) == f"Actor(Me, {actor_hex})"
    assert ember.get(handle.ids.remote(), timeout=60)[0] == actor_hex
    ctx = ember.get_runtime_context()
    assert ctx.get_actor_id() is None
    with pytest.raises(RuntimeError):
        ctx.current_actor  # noqa: B018
    _kill(m)


def test_exit_actor(cluster):
    @ember.remote
    class Quitter:
        def ping(self):
            return "pong"

        def quit(self):
            ember.actor.exit_actor()

    q = Quitter.remote()
    assert ember.get(q.ping.remote(), timeout=60) == "pong"
    # As in Ray, the call that exits reports the actor's end.
    with pytest.raises(exceptions.RayActorError, match="exit_actor"):
        ember.get(q.quit.remote(), timeout=60)
    with pytest.raises(exceptions.ActorDiedError):
        ember.get(q.ping.remote(), timeout=60)
    with pytest.raises(TypeError):
        ember.actor.exit_actor()  # not in an actor


def test_status_lists_actors_with_state_and_death_cause(cluster):
    alive = Counter.options(name="status-alive").remote()
    dead = Counter.remote()
    ember.get([alive.inc.remote(), dead.inc.remote()], timeout=60)
    ember.kill(dead)
    with pytest.raises(exceptions.ActorDiedError):
        ember.get(dead.inc.remote(), timeout=30)
    out = subprocess.run(check=False, args=[EMBER_BIN, "status", "--address", cluster["address"]],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    alive_line = next(line for line in lines if alive._actor_id.hex() in line)
    dead_line = next(line for line in lines if dead._actor_id.hex() in line)
    assert "alive" in alive_line and 'name="status-alive"' in alive_line, alive_line
    assert "dead" in dead_line and "ember.kill" in dead_line, dead_line
    ember.kill(alive)


def test_ember_list_actors_and_nodes(cluster):
    listed = Counter.options(name="listed", namespace="list-ns").remote()
    ember.get(listed.inc.remote(), timeout=60)
    out = subprocess.run(check=False, args=[EMBER_BIN, "list", "actors", "--address", cluster["address"]],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split("\t")[:3] == ["ACTOR_ID", "CLASS", "STATE"]
    row = next(r.split("\t") for r in rows if r.startswith(listed._actor_id.hex()))
    assert row[1] == "Counter" and row[2] == "alive" and row[3] == "listed" and row[4] == "list-ns"
    nodes = subprocess.run(check=False, args=[EMBER_BIN, "list", "nodes", "--address", cluster["address"]],
                           capture_output=True, text=True, timeout=30)
    assert nodes.returncode == 0, nodes.stderr
    node_rows = nodes.stdout.splitlines()[1:]
    assert len(node_rows) == 1 and node_rows[0].split("\t")[4] == "2"
    ember.kill(listed)


def test_every_worker_process_has_its_own_numpy_random_state(cluster):
    """Workers are forked from one pre-imported process: each must reseed
    numpy's global generator, or every actor would draw the same numbers."""

    @ember.remote
    class Draw:
        def draw(self):
            import numpy

            return os.getpid(), tuple(int(x) for x in numpy.random.randint(0, 2**31, 8))

    actors = [Draw.remote() for _ in range(4)]
    draws = ember.get([a.draw.remote() for a in actors])
    assert len({pid for pid, _ in draws}) == 4, "one process per actor"
    assert len({numbers for _, numbers in draws}) == 4, f"workers drew the same numbers: {draws}"
    for a in actors:
        ember.kill(a)
