"""ember's end-to-end benchmark workloads, written once against a Ray-like module.

Every workload is a function ``(ray, quick) -> {figure: value}`` that only
uses Ray Core's public API on the module it is given, so the same code runs
with ``import ember as ray`` and with ``import ray``. ``benches/bench_all.py``
runs them against ember (with the Go and Rust benches) and prints one table;
``benches/bench_compare.py`` runs them against ember and Ray 2.60 in turn.

Each workload runs in a fresh process, on a fresh local cluster
(``init(num_cpus=N)``, N = 2 by default), unless it starts its own (``init``,
``spilling``, ``cluster``):

    .venv/bin/python benches/suite.py --list
    .venv/bin/python benches/suite.py --framework ember --workload tasks_sync [--quick] [--json PATH|-]
    .venv-ray/bin/python benches/suite.py --framework ray --workload tasks_sync --json -

A run prints how each figure was measured on stderr; ``--json -`` prints the
result on stdout as one JSON line (``--json PATH`` writes it to a file):
``{"framework", "version", "workload", "figures", "quick", "num_cpus",
"seconds"}``, or with ``"error"`` set when the workload failed (exit code 1).

The task, actor and object functions are defined inside ``_defs(ray)`` so
that cloudpickle ships them by value: the workers of either framework need
not import this file. See benches/README.md for each figure's definition.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field

MB = 1_000_000
BIG_BYTES = 100 * MB  # 12.5 M float64
SMALL_VALUE = b"x" * 100
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Set by the runner: CPUs of the local cluster, and its session directory
# (what ``init()`` returned), used to find Ray's processes.
NUM_CPUS = 2
SESSION_DIR: str | None = None
# Parents in flight per CPU in tasks_nested. Every parent blocked in get holds
# a worker process (blocked workers do not count against the pool's cap, so
# many parents at once finish too, but the figure would then measure process
# start-up).
NESTED_WINDOW = 4


@dataclass(frozen=True)
class Figure:
    """One reported number. ``target`` None: reported, not judged.
    ``rate_of``: "task" or "actor" for the rates that must be >= 10x Ray's."""

    target: float | None
    better: str  # "higher" or "lower"
    unit: str  # "/s", "GB/s", "s", "ms", "us", "MB", "%", "x"
    rate_of: str | None = None


FIGURES: dict[str, Figure] = {
    "init_s": Figure(0.3, "lower", "s"),
    "first_task_after_init_s": Figure(None, "lower", "s"),
    "tasks_sync_per_s": Figure(10_000, "higher", "/s", "task"),
    "tasks_async_per_s": Figure(50_000, "higher", "/s", "task"),
    "tasks_1kb_arg_per_s": Figure(None, "higher", "/s", "task"),
    "nested_parents_per_s": Figure(2_000, "higher", "/s", "task"),
    "chain_tasks_per_s": Figure(5_000, "higher", "/s", "task"),
    "put_small_per_s": Figure(20_000, "higher", "/s"),
    "get_small_per_s": Figure(50_000, "higher", "/s"),
    "put_100mb_gbps": Figure(4.0, "higher", "GB/s"),
    "get_100mb_ms": Figure(None, "lower", "ms"),
    "put_100mb_arrow_gbps": Figure(4.0, "higher", "GB/s"),
    "get_100mb_arrow_ms": Figure(None, "lower", "ms"),
    "task_return_100mb_gbps": Figure(3.0, "higher", "GB/s"),
    "wait_1k_refs_per_s": Figure(5_000, "higher", "/s"),
    "matmul_products_per_s": Figure(None, "higher", "/s"),
    "churn_tasks_per_s": Figure(None, "higher", "/s"),
    "actor_calls_sync_per_s": Figure(10_000, "higher", "/s", "actor"),
    "actor_calls_async_per_s": Figure(50_000, "higher", "/s", "actor"),
    "actor_calls_n_to_n_per_s": Figure(None, "higher", "/s", "actor"),
    "actor_create_per_s": Figure(200, "higher", "/s", "actor"),
    "idle_pss_mb": Figure(80, "lower", "MB"),
    "idle_rss_mb": Figure(None, "lower", "MB"),
    "idle_cpu_pct": Figure(1.0, "lower", "%"),
    "idle_driver_cpu_pct": Figure(None, "lower", "%"),
    "rollouts_speedup": Figure(1.8, "higher", "x"),
    "rollouts_plain_speedup": Figure(None, "higher", "x"),
    "flight_do_get_100mb_gbps": Figure(1.2, "higher", "GB/s"),
    "put_spilling_gbps": Figure(None, "higher", "GB/s"),
    "get_spilled_gbps": Figure(None, "higher", "GB/s"),
    "transfer_100mb_gbps": Figure(1.2, "higher", "GB/s"),
    "spread_tasks_per_s": Figure(None, "higher", "/s", "task"),
    "node_death_to_retry_s": Figure(2.0, "lower", "s"),
    "head_restart_recovery_s": Figure(None, "lower", "s"),
}


def fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"
    if unit == "GB/s":
        return f"{value:,.2f} GB/s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g}"


def passes(name: str, value) -> bool | None:
    fig = FIGURES.get(name)
    if fig is None or fig.target is None or value is None:
        return None
    return value >= fig.target if fig.better == "higher" else value <= fig.target


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def report(out: dict, name: str, value: float, detail: str = "") -> None:
    out[name] = value
    unit = FIGURES[name].unit if name in FIGURES else ""
    log(f"{name:<26} {fmt(value, unit):>14}  {detail}")


def is_ray(ray) -> bool:
    return ray.__name__.split(".")[0] == "ray"


def timed_loop(fn, max_iters: int, max_s: float) -> tuple[int, float]:
    """Call fn() until max_iters calls or max_s seconds; return (calls, seconds)."""
    n = 0
    start = time.perf_counter()
    deadline = start + max_s
    while n < max_iters:
        fn()
        n += 1
        if n % 20 == 0 and time.perf_counter() > deadline:
            break
    return n, time.perf_counter() - start


# -- the remote functions and actors, per framework module -------------------

_DEFS: dict[int, object] = {}


def _defs(ray):
    """The remote functions and actor classes of the workloads, made once per
    module. Local functions: cloudpickle ships them by value."""
    if id(ray) in _DEFS:
        return _DEFS[id(ray)]
    import numpy as np

    @ray.remote
    def noop():
        return None

    @ray.remote
    def sink(arg):
        return None

    @ray.remote
    def child():
        return 1

    @ray.remote
    def parent(fanout):
        return sum(ray.get([child.remote() for _ in range(fanout)]))

    @ray.remote
    def step(x):
        return x + 1

    @ray.remote
    def make_array(nbytes):
        return np.ones(nbytes // 8)

    @ray.remote
    class Sink:
        def ping(self):
            return None

    @ray.remote(num_cpus=1)
    def caller(actor, n):
        ray.get([actor.ping.remote() for _ in range(n)])
        return n

    class Defs:
        pass

    d = Defs()
    d.__dict__.update(noop=noop, sink=sink, child=child, parent=parent, step=step,
                      make_array=make_array, Sink=Sink, caller=caller)
    _DEFS[id(ray)] = d
    return d


# -- workloads -----------------------------------------------------------------


def init_kwargs(ray) -> dict:
    kwargs = {"num_cpus": NUM_CPUS}
    if is_ray(ray):
        # What a plain `pip install ray` starts anyway; stated so that a
        # ray[default] install does not add the dashboard's processes.
        kwargs["include_dashboard"] = False
    return kwargs


def wl_init(ray, quick: bool) -> dict:
    """Wall time of init() starting a fresh local cluster, median of cycles."""
    out: dict = {}
    cycles = 2 if quick else 3
    inits, firsts, stops = [], [], []
    for _ in range(cycles):
        start = time.perf_counter()
        ray.init(**init_kwargs(ray))
        inits.append(time.perf_counter() - start)
        d = _defs(ray)
        start = time.perf_counter()
        ray.get(d.noop.remote())
        firsts.append(time.perf_counter() - start)
        start = time.perf_counter()
        ray.shutdown()
        stops.append(time.perf_counter() - start)
    report(out, "init_s", statistics.median(inits),
           f"median of {cycles} fresh init() ({', '.join(f'{t:.3f}' for t in inits)} s); "
           f"shutdown() {statistics.median(stops):.3f} s")
    report(out, "first_task_after_init_s", statistics.median(firsts),
           "first empty task's round trip right after init() (worker start)")
    return out


def wl_tasks_sync(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    ray.get([d.noop.remote() for _ in range(200)])
    for _ in range(100 if quick else 200):
        ray.get(d.noop.remote())
    n, secs = timed_loop(lambda: ray.get(d.noop.remote()), 5_000 if quick else 30_000,
                         0.5 if quick else 3.0)
    report(out, "tasks_sync_per_s", n / secs,
           f"submit one empty task + get, {n} times in {secs:.2f} s "
           f"({secs / n * 1e6:.0f} us round trip)")
    return out


def _async_rate(ray, submit, n: int, reps: int) -> tuple[float, float]:
    """Best and median rate of: n submits, then one get of all."""
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        refs = [submit() for _ in range(n)]
        values = ray.get(refs)
        secs = time.perf_counter() - start
        assert len(values) == n
        del refs, values
        rates.append(n / secs)
    return max(rates), statistics.median(rates)


def wl_tasks_async(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    n, reps = (2_000, 2) if quick else (10_000, 3)
    ray.get([d.noop.remote() for _ in range(1000)])
    best, median = _async_rate(ray, d.noop.remote, n, reps)
    report(out, "tasks_async_per_s", best,
           f"best of {reps} x {n} empty tasks submitted, then one get (median {median:,.0f}/s)")
    return out


def wl_tasks_1kb_arg(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    arg = b"a" * 1024
    n, reps = (2_000, 2) if quick else (10_000, 3)
    ray.get([d.sink.remote(arg) for _ in range(1000)])
    best, median = _async_rate(ray, lambda: d.sink.remote(arg), n, reps)
    report(out, "tasks_1kb_arg_per_s", best,
           f"best of {reps} x {n} tasks, each with a 1 KB bytes argument (inline), "
           f"submitted then one get (median {median:,.0f}/s)")
    return out


def wl_tasks_nested(ray, quick: bool) -> dict:
    """Parents that each submit 10 empty children and get them, NESTED_WINDOW
    parents per CPU in flight at a time (a parent blocked in get lends its
    CPU but holds its worker process: all at once would measure process
    start-up; see benches/README.md)."""
    d, out = _defs(ray), {}
    fanout, window = 10, NESTED_WINDOW * NUM_CPUS
    parents, reps = (200, 1) if quick else (1000, 3)
    assert ray.get(d.parent.remote(fanout)) == fanout
    ray.get([d.parent.remote(fanout) for _ in range(window)])
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        in_flight = [d.parent.remote(fanout) for _ in range(window)]
        submitted, done = window, 0
        while in_flight:
            ready, in_flight = ray.wait(in_flight, num_returns=1)
            done += sum(ray.get(ready))
            if submitted < parents:
                in_flight.append(d.parent.remote(fanout))
                submitted += 1
        secs = time.perf_counter() - start
        assert done == fanout * parents
        rates.append(parents / secs)
    report(out, "nested_parents_per_s", max(rates),
           f"best of {reps} x {parents} parent tasks, {window} in flight at a time, each "
           f"submitting {fanout} empty children and getting them ({max(rates) * (fanout + 1):,.0f} "
           f"tasks/s in all; median {statistics.median(rates):,.0f} parents/s)")
    return out


def wl_chain(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    length, reps = (1000, 2) if quick else (1000, 3)
    ref = 0
    for _ in range(50):
        ref = d.step.remote(ref)
    assert ray.get(ref) == 50
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        ref = 0
        for _ in range(length):
            ref = d.step.remote(ref)  # each task takes the previous one's result by ref
        assert ray.get(ref) == length
        rates.append(length / (time.perf_counter() - start))
        del ref
    report(out, "chain_tasks_per_s", max(rates),
           f"a chain of {length} tasks, each taking the previous one's ObjectRef, submitted "
           f"then the last one got; best of {reps} (median {statistics.median(rates):,.0f}/s)")
    return out


def wl_put_small(ray, quick: bool) -> dict:
    out: dict = {}
    max_iters, max_s = (5_000, 1.0) if quick else (20_000, 2.0)
    for _ in range(500):
        ray.put(SMALL_VALUE)
    n, secs = timed_loop(lambda: ray.put(SMALL_VALUE), max_iters, max_s)
    report(out, "put_small_per_s", n / secs,
           f"put of {len(SMALL_VALUE)} bytes (ref dropped), {n} times in {secs:.2f} s")
    ref = ray.put(SMALL_VALUE)
    assert ray.get(ref) == SMALL_VALUE
    n, secs = timed_loop(lambda: ray.get(ref), max_iters, max_s)
    report(out, "get_small_per_s", n / secs,
           f"get of one put {len(SMALL_VALUE)}-byte ref, {n} times in {secs:.2f} s")
    return out


def wl_put_100mb(ray, quick: bool) -> dict:
    import numpy as np

    out: dict = {}
    reps = 4 if quick else 10
    array = np.arange(BIG_BYTES // 8, dtype=np.float64)  # pages touched: a real 100 MB
    ray.get(ray.put(array))  # warm the store's memory
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        ref = ray.put(array)
        times.append(time.perf_counter() - start)
        del ref  # freed, so the next put can reuse the memory
    gbps = [BIG_BYTES / 1e9 / t for t in times]
    report(out, "put_100mb_gbps", statistics.median(gbps),
           f"median of {reps} puts of a 100 MB float64 array, ref dropped each time "
           f"(first {gbps[0]:.2f}, best {max(gbps):.2f} GB/s)")
    ref = ray.put(array)
    value = ray.get(ref)
    zero_copy = isinstance(value, np.ndarray) and not value.flags.owndata
    assert value[12345] == 12345.0 and value[-1] == array[-1]
    del value
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        value = ray.get(ref)
        times.append(time.perf_counter() - start)
        del value
    report(out, "get_100mb_ms", statistics.median(times) * 1e3,
           f"median of {reps} gets of one put 100 MB array "
           f"(zero-copy: {'yes' if zero_copy else 'NO'})")
    return out


def wl_put_100mb_arrow(ray, quick: bool) -> dict:
    import numpy as np
    import pyarrow as pa

    out: dict = {}
    reps = 4 if quick else 10
    table = pa.table({"x": np.arange(BIG_BYTES // 8, dtype=np.float64)})
    ray.get(ray.put(table))  # warm the store's memory
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        ref = ray.put(table)
        times.append(time.perf_counter() - start)
        del ref
    gbps = [table.nbytes / 1e9 / t for t in times]
    report(out, "put_100mb_arrow_gbps", statistics.median(gbps),
           f"median of {reps} puts of a 100 MB pyarrow Table, ref dropped each time "
           f"(best {max(gbps):.2f} GB/s)")
    ref = ray.put(table)
    value = ray.get(ref)
    assert value.num_rows == table.num_rows and value.column(0)[12345].as_py() == 12345.0
    del value
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        value = ray.get(ref)
        times.append(time.perf_counter() - start)
        del value
    report(out, "get_100mb_arrow_ms", statistics.median(times) * 1e3,
           f"median of {reps} gets of one put 100 MB pyarrow Table")
    return out


def wl_task_return_100mb(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    reps = 3 if quick else 10
    ray.get(d.make_array.remote(BIG_BYTES))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        value = ray.get(d.make_array.remote(BIG_BYTES))
        times.append(time.perf_counter() - start)
        assert value.nbytes == BIG_BYTES
        del value
    report(out, "task_return_100mb_gbps", BIG_BYTES / 1e9 / statistics.median(times),
           f"get(task returning np.ones(100 MB)), median of {reps}; includes the task's fill")
    return out


def _rates(rounds: int, run) -> tuple[list[float], object]:
    """Call run() `rounds` times: each call's units per second (run's
    result, or its length when it is a list) and the last result."""
    rates, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = run()
        done = len(result) if isinstance(result, list) else result
        rates.append(done / (time.perf_counter() - start))
    return rates, result


def wl_matmul(ray, quick: bool) -> dict:
    """Tasks that multiply 400 x 400 float64 matrices (numpy's BLAS), one per
    CPU at a time: what a framework's workers do to compute-bound library code
    (how many threads each one's BLAS runs on the shared cores)."""
    import numpy as np

    @ray.remote
    def products(n, reps):
        a = np.random.default_rng(0).standard_normal((n, n))
        b = a.T.copy()
        for _ in range(reps):
            a @ b
        return reps

    out: dict = {}
    n, reps = 400, 25
    tasks, rounds = (2 * NUM_CPUS, 2) if quick else (4 * NUM_CPUS, 3)
    ray.get([products.remote(n, 1) for _ in range(NUM_CPUS)])
    rates, _ = _rates(rounds, lambda: sum(ray.get([products.remote(n, reps) for _ in range(tasks)])))
    report(out, "matmul_products_per_s", max(rates),
           f"{tasks} tasks of {reps} products of {n} x {n} float64 matrices, then one get; "
           f"best of {rounds} (median {statistics.median(rates):,.0f}/s)")
    return out


def wl_churn(ray, quick: bool) -> dict:
    """Tasks that build and drop 200,000 small dicts each: plain Python work
    during which the cyclic GC runs full collections in the worker (what
    they cost depends on what the worker inherited and keeps)."""
    import gc

    @ray.remote
    def churn(n):
        junk = [{"i": i, "l": [i]} for i in range(n)]
        del junk
        return gc.get_stats()[2]["collections"]

    out: dict = {}
    n = 200_000
    tasks, rounds = (8, 1) if quick else (20 * NUM_CPUS, 2)
    ray.get([churn.remote(10) for _ in range(2 * NUM_CPUS)])
    rates, collections = _rates(rounds, lambda: ray.get([churn.remote(n) for _ in range(tasks)]))
    report(out, "churn_tasks_per_s", max(rates),
           f"{tasks} tasks each building and dropping {n:,} small dicts, then one get; best of "
           f"{rounds} ({max(collections)} full GC collections in a worker by the end)")
    return out


def wl_wait_1k(ray, quick: bool) -> dict:
    """Ray's microbenchmark "single client wait 1k refs": 1,000 tasks, then
    wait(num_returns=1) on what is not ready yet until nothing is left."""
    d, out = _defs(ray), {}
    reps = 2 if quick else 5
    ray.get([d.noop.remote() for _ in range(1000)])
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        not_ready = [d.noop.remote() for _ in range(1000)]
        waits, fetch_local = 0, True
        while not_ready:
            _ready, not_ready = ray.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False
            waits += 1
        rates.append(waits / (time.perf_counter() - start))
    report(out, "wait_1k_refs_per_s", max(rates),
           f"1,000 empty tasks then wait(num_returns=1) on the rest until none is left, "
           f"best of {reps}: {max(rates) / 1000:.2f} rounds/s as Ray's microbenchmark counts "
           f"(median {statistics.median(rates):,.0f} waits/s)")
    return out


def wl_actor_calls_sync(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    actor = d.Sink.remote()
    for _ in range(200):
        ray.get(actor.ping.remote())
    n, secs = timed_loop(lambda: ray.get(actor.ping.remote()), 5_000 if quick else 30_000,
                         0.5 if quick else 3.0)
    report(out, "actor_calls_sync_per_s", n / secs,
           f"one actor: call + get, {n} times ({secs / n * 1e6:.0f} us round trip)")
    return out


def wl_actor_calls_async(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    actor = d.Sink.remote()
    ray.get([actor.ping.remote() for _ in range(1000)])
    n, reps = (2_000, 2) if quick else (10_000, 3)
    best, median = _async_rate(ray, actor.ping.remote, n, reps)
    report(out, "actor_calls_async_per_s", best,
           f"one actor: best of {reps} x {n} calls, then one get (median {median:,.0f}/s)")
    return out


def wl_actor_calls_n_to_n(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    actors = [d.Sink.remote() for _ in range(NUM_CPUS)]
    ray.get([a.ping.remote() for a in actors])
    ray.get([d.caller.remote(a, 100) for a in actors])
    n = 1000 if quick else 5000
    start = time.perf_counter()
    done = sum(ray.get([d.caller.remote(a, n) for a in actors]))
    secs = time.perf_counter() - start
    report(out, "actor_calls_n_to_n_per_s", done / secs,
           f"{NUM_CPUS} caller tasks (1 CPU each), each making {n} calls to its own actor "
           f"then one get")
    for a in actors:
        ray.kill(a)
    return out


def wl_actor_create(ray, quick: bool) -> dict:
    d, out = _defs(ray), {}
    n = 20 if quick else 50
    warm = d.Sink.remote()
    ray.get(warm.ping.remote())
    ray.kill(warm)
    start = time.perf_counter()
    actors = [d.Sink.remote() for _ in range(n)]
    ray.get([a.ping.remote() for a in actors])
    secs = time.perf_counter() - start
    report(out, "actor_create_per_s", n / secs,
           f"{n} actors created at once, each answered one call, in {secs:.2f} s")
    for a in actors:
        ray.kill(a)
    return out


def framework_processes(psutil):
    """The processes of the cluster this driver started, the driver excluded:
    its descendants (ember: the node, its fork server and workers; Ray: gcs,
    raylet, workers, monitors), plus any process whose command line names the
    session directory (Ray's daemons that are not children)."""
    me = psutil.Process()
    procs = {p.pid: p for p in me.children(recursive=True)}
    if SESSION_DIR:
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmdline = " ".join(p.info["cmdline"] or [])
            except (psutil.Error, TypeError):
                continue
            if SESSION_DIR in cmdline and p.pid != me.pid:
                procs.setdefault(p.pid, p)
    return list(procs.values())


def _cpu_seconds(proc) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def wl_idle(ray, quick: bool) -> dict:
    """Memory and CPU of the framework's processes after some work, then idle."""
    import psutil

    d, out = _defs(ray), {}
    ray.get([d.noop.remote() for _ in range(1000)])
    ray.get(ray.put(b"x" * 1000))
    settle, window = (2.0, 3.0) if quick else (3.0, 5.0)
    time.sleep(settle)
    procs = framework_processes(psutil)
    me = psutil.Process()
    before = {}
    for p in procs:
        try:
            before[p.pid] = _cpu_seconds(p)
        except psutil.Error:
            pass
    driver_before = _cpu_seconds(me)
    time.sleep(window)
    cpu = 0.0
    driver_cpu = _cpu_seconds(me) - driver_before
    rss = pss = 0
    rows = []
    for p in framework_processes(psutil):
        try:
            used = _cpu_seconds(p) - before.get(p.pid, 0.0)
            info = p.memory_full_info()
            name = " ".join(p.cmdline()[:3]) or p.name()
        except psutil.Error:  # exited meanwhile
            continue
        cpu += used
        rss += info.rss
        pss += info.pss
        rows.append(f"    pid {p.pid:>7}  rss {info.rss / MB:7.1f} MB  pss {info.pss / MB:7.1f} MB  "
                    f"cpu {used:5.2f} s  {name[:70]}")
    log(f"  {len(rows)} processes of the cluster (driver excluded), idle {window:.0f} s:")
    log("\n".join(rows))
    report(out, "idle_pss_mb", pss / MB, f"PSS sum over {len(rows)} processes")
    report(out, "idle_rss_mb", rss / MB, "RSS sum (shared pages counted once per process)")
    report(out, "idle_cpu_pct", 100 * cpu / window,
           f"CPU of those processes over {window:.0f} idle s ({cpu:.3f} s), % of one core")
    report(out, "idle_driver_cpu_pct", 100 * driver_cpu / window,
           f"the idle driver's own CPU ({driver_cpu:.3f} s)")
    out.update(idle_processes=len(rows), idle_cpu_s=cpu, idle_window_s=window)
    return out


def _load_rollouts(ray):
    """examples/rollouts.py executed as a fresh module in which `import ember
    as ray` gives `ray`: its functions are then not importable by name, so
    cloudpickle ships them by value to the workers."""
    path = os.path.join(REPO, "examples", "rollouts.py")
    spec = importlib.util.spec_from_file_location("_bench_rollouts", path)
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("ember")
    sys.modules["ember"] = ray
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["ember"]
        else:
            sys.modules["ember"] = saved
    return module


class _RemoteStub:
    """What examples/rollouts.py needs of `ray` in a plain process: `remote`."""

    @staticmethod
    def remote(fn):
        return fn


_PLAIN_ROLLOUTS = None


def _plain_init() -> None:
    global _PLAIN_ROLLOUTS
    _PLAIN_ROLLOUTS = _load_rollouts(_RemoteStub)


def _plain_episodes(policy, jobs):
    return [_PLAIN_ROLLOUTS.run_episode(policy, *job) for job in jobs]


def _plain_batch(pool, procs: int):
    """run_batch for train(): the jobs split evenly over `procs` plain
    processes (multiprocessing, no framework), the policy pickled to each."""

    def batch(policy, jobs):
        shares = [jobs[i::procs] for i in range(procs)]
        done = pool.starmap(_plain_episodes, [(policy, share) for share in shares])
        results = [None] * len(jobs)
        for i, share in enumerate(done):
            results[i::procs] = share
        return results

    return batch


def wl_rollouts(ray, quick: bool) -> dict:
    """examples/rollouts.py: the same ES training run as tasks and in-process,
    and, as the bound the hardware sets, in plain processes.

    The three are timed in the order tasks, in-process, plain, plain,
    in-process, tasks and summed: the host's speed drifts within seconds here
    (the same sequential loop took 1.45-2.18 s in one afternoon), and a ratio
    of two timings taken one after the other swung with it. In that order a
    drift that is steady over the run costs each side alike.

    The plain run is `multiprocessing` (spawned processes, one per CPU, the
    episodes dealt out evenly in advance, which suits jobs of equal length):
    what two processes that share nothing but the machine get, so
    `rollouts_plain_speedup` is the speedup this host allows at the moment
    the framework's was measured.
    """
    import multiprocessing

    import numpy as np

    out: dict = {}
    r = _load_rollouts(ray)
    iterations, steps = (2, 5000) if quick else (5, 5000)
    num_cpus = int(ray.cluster_resources().get("CPU", 1))
    num_rollouts = max(4, 2 * num_cpus)
    zeros = np.zeros((r.ACT_DIM, r.OBS_DIM))
    ray.get([r.rollout.remote(zeros, 0, 10) for _ in range(num_cpus)])
    r.run_episode(zeros, 0, steps)
    with multiprocessing.get_context("spawn").Pool(num_cpus, initializer=_plain_init) as pool:
        plain = _plain_batch(pool, num_cpus)
        # One untimed iteration each way: every worker and every plain process
        # has loaded the function and numpy.
        r.train(1, num_rollouts, steps, r.ember_batch, False)
        r.train(1, num_rollouts, steps, plain, False)
        order = (r.ember_batch, r.local_batch, plain, plain, r.local_batch, r.ember_batch)
        times = dict.fromkeys(order, 0.0)
        results = {}
        for batch in order:
            start = time.perf_counter()
            results[batch] = r.train(iterations, num_rollouts, steps, batch, False)
            times[batch] += time.perf_counter() - start
    seq_policy, seq_history = results[r.local_batch]
    for batch in (r.ember_batch, plain):
        policy, history = results[batch]
        assert all(np.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(history, seq_history))
        assert np.allclose(policy, seq_policy, rtol=1e-9, atol=1e-12)
    parallel_s, sequential_s, plain_s = (times[b] for b in (r.ember_batch, r.local_batch, plain))
    shape = f"2 x {iterations} x {num_rollouts} rollouts of {steps} steps"
    report(out, "rollouts_speedup", sequential_s / parallel_s,
           f"{shape}, timed tasks / in-process / plain / plain / in-process / tasks: "
           f"sequential {sequential_s:.2f} s, as tasks on {num_cpus} CPUs {parallel_s:.2f} s "
           f"(same rewards)")
    report(out, "rollouts_plain_speedup", sequential_s / plain_s,
           f"the same in {num_cpus} plain processes (multiprocessing, no framework): "
           f"{plain_s:.2f} s; the tasks reached {plain_s / parallel_s:.0%} of it")
    return out


# -- ember-only workloads -----------------------------------------------------


def _session_info(ray) -> dict:
    path = os.path.join(SESSION_DIR or "", "session.json")
    with open(path) as f:
        return json.load(f)


def wl_flight_do_get(ray, quick: bool) -> dict:
    """pyarrow.flight do_get of a 100 MB Arrow table from the node's port."""
    import numpy as np
    import pyarrow as pa
    from pyarrow import flight

    out: dict = {}
    reps = 3 if quick else 10
    table = pa.table({"x": np.ones(BIG_BYTES // 8)})
    ref = ray.put(table)
    info = _session_info(ray)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {info['token']}".encode())])
    client = flight.connect(f"grpc://{info['address']}")
    ticket = flight.Ticket(ref.hex().encode())
    client.do_get(ticket, options).read_all()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        client.do_get(ticket, options).read_all()
        times.append(time.perf_counter() - start)
    report(out, "flight_do_get_100mb_gbps", table.nbytes / 1e9 / statistics.median(times),
           f"pyarrow.flight do_get of a put 100 MB table over loopback, median of {reps}")
    return out


def wl_spilling(ray, quick: bool) -> dict:
    """Live 100 MB objects 3x the store's size: puts spill, gets restore."""
    import numpy as np

    out: dict = {}
    count, store = (6, 256 << 20) if quick else (30, 1 << 30)
    ray.init(num_cpus=1, object_store_memory=store)
    try:
        arrays = [np.full(BIG_BYTES // 8, i, dtype=np.float64) for i in range(count)]
        ray.get(ray.put(arrays[0]))
        start = time.perf_counter()
        refs = [ray.put(a) for a in arrays]
        secs = time.perf_counter() - start
        report(out, "put_spilling_gbps", count * BIG_BYTES / 1e9 / secs,
               f"{count} x 100 MB kept live in a {store >> 20} MiB store")
        start = time.perf_counter()
        for i, ref in enumerate(refs):
            assert ray.get(ref)[0] == i
        secs = time.perf_counter() - start
        report(out, "get_spilled_gbps", count * BIG_BYTES / 1e9 / secs,
               "each get restores one from disk (and spills another)")
    finally:
        ray.shutdown()
    return out


def wl_cluster(ray, quick: bool) -> dict:
    """A head and 3 nodes on 127.0.0.1-4 (benches/bench_cluster.py)."""
    sys.path.insert(0, HERE)
    import bench_cluster

    results = bench_cluster.run(quick)
    return {k: v for k, v in results.items() if isinstance(v, (int, float))}


@dataclass(frozen=True)
class Workload:
    fn: object
    what: str
    frameworks: tuple = ("ember", "ray")
    own_init: bool = False  # starts (and stops) its own cluster(s)
    timeout_s: float = 300
    figures: tuple = field(default=())


WORKLOADS: dict[str, Workload] = {
    "init": Workload(wl_init, "init() of a fresh local cluster", own_init=True,
                     figures=("init_s", "first_task_after_init_s")),
    "tasks_sync": Workload(wl_tasks_sync, "one empty task + get, repeated",
                           figures=("tasks_sync_per_s",)),
    "tasks_async": Workload(wl_tasks_async, "N empty tasks, then get all",
                            figures=("tasks_async_per_s",)),
    "tasks_1kb_arg": Workload(wl_tasks_1kb_arg, "N tasks with a 1 KB argument, then get all",
                              figures=("tasks_1kb_arg_per_s",)),
    "tasks_nested": Workload(wl_tasks_nested, "parents each launching 10 children",
                             figures=("nested_parents_per_s",)),
    "chain": Workload(wl_chain, "a dependency chain of 1,000 tasks", figures=("chain_tasks_per_s",)),
    "put_small": Workload(wl_put_small, "put and get of 100 bytes",
                          figures=("put_small_per_s", "get_small_per_s")),
    "put_100mb": Workload(wl_put_100mb, "put and get of a 100 MB numpy array",
                          figures=("put_100mb_gbps", "get_100mb_ms")),
    "put_100mb_arrow": Workload(wl_put_100mb_arrow, "put and get of a 100 MB pyarrow Table",
                                figures=("put_100mb_arrow_gbps", "get_100mb_arrow_ms")),
    "task_return_100mb": Workload(wl_task_return_100mb, "a task returning 100 MB",
                                  figures=("task_return_100mb_gbps",)),
    "matmul": Workload(
        wl_matmul,
        "tasks multiplying 400 x 400 matrices (numpy BLAS)",
        figures=("matmul_products_per_s",),
    ),
    "churn": Workload(
        wl_churn,
        "tasks building and dropping 200,000 small dicts (the cyclic GC's work)",
        figures=("churn_tasks_per_s",),
    ),
    "wait_1k": Workload(wl_wait_1k, "wait on 1,000 refs", figures=("wait_1k_refs_per_s",)),
    "actor_calls_sync": Workload(wl_actor_calls_sync, "actor call + get, repeated",
                                 figures=("actor_calls_sync_per_s",)),
    "actor_calls_async": Workload(wl_actor_calls_async, "N actor calls, then get all",
                                  figures=("actor_calls_async_per_s",)),
    "actor_calls_n_to_n": Workload(wl_actor_calls_n_to_n, "one caller task per CPU, each to its actor",
                                   figures=("actor_calls_n_to_n_per_s",)),
    "actor_create": Workload(wl_actor_create, "create actors, each answers one call",
                             figures=("actor_create_per_s",)),
    "idle": Workload(wl_idle, "memory and CPU of the cluster's processes, idle",
                     figures=("idle_pss_mb", "idle_rss_mb", "idle_cpu_pct", "idle_driver_cpu_pct")),
    "rollouts": Workload(wl_rollouts, "examples/rollouts.py: speedup over sequential",
                         figures=("rollouts_speedup", "rollouts_plain_speedup")),
    "flight_do_get": Workload(wl_flight_do_get, "pyarrow.flight do_get of 100 MB (ember only)",
                              frameworks=("ember",), figures=("flight_do_get_100mb_gbps",)),
    "spilling": Workload(wl_spilling, "3x the store's size of live 100 MB objects (ember only)",
                         frameworks=("ember",), own_init=True,
                         figures=("put_spilling_gbps", "get_spilled_gbps")),
    "cluster": Workload(wl_cluster, "a head and 3 nodes: transfer, SPREAD tasks/s, failures "
                        "(ember only)", frameworks=("ember",), own_init=True, timeout_s=600,
                        figures=("transfer_100mb_gbps", "spread_tasks_per_s",
                                 "node_death_to_retry_s", "head_restart_recovery_s")),
}


# -- running one workload in this process --------------------------------------


def import_framework(name: str):
    if name == "ember":
        import ember

        return ember
    if name == "ray":
        import ray

        return ray
    raise ValueError(f"unknown framework {name!r} (ember or ray)")


def run_workload(framework: str, workload: str, quick: bool, num_cpus: int = 2) -> dict:
    """Run one workload here; the result document (see the module docs)."""
    global NUM_CPUS, SESSION_DIR
    NUM_CPUS = num_cpus
    wl = WORKLOADS[workload]
    if framework not in wl.frameworks:
        raise ValueError(f"workload {workload} runs on {', '.join(wl.frameworks)} only")
    ray = import_framework(framework)
    doc = {"framework": framework, "version": getattr(ray, "__version__", "?"),
           "workload": workload, "quick": quick, "num_cpus": num_cpus, "figures": {},
           "python": platform.python_version(), "machine_cpus": os.cpu_count()}
    start = time.perf_counter()
    try:
        if wl.own_init:
            figures = wl.fn(ray, quick)
        else:
            context = ray.init(**init_kwargs(ray))
            SESSION_DIR = context.address_info.get("session_dir") or None
            try:
                figures = wl.fn(ray, quick)
            finally:
                ray.shutdown()
        doc["figures"] = figures
    except Exception as e:  # noqa: BLE001 - any failure is reported to the parent as data
        traceback.print_exc()
        doc["error"] = f"{type(e).__name__}: {e}"
    doc["seconds"] = time.perf_counter() - start
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("ember", "ray"), default="ember")
    parser.add_argument("--workload", help="one of --list")
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI smoke check)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    parser.add_argument("--json", metavar="PATH", help="write the result here ('-': stdout)")
    parser.add_argument("--list", action="store_true", help="list the workloads")
    args = parser.parse_args()
    if args.list or not args.workload:
        for name, wl in WORKLOADS.items():
            print(f"{name:<20} {'/'.join(wl.frameworks):<10} {wl.what}")
        return 0
    if args.workload not in WORKLOADS:
        parser.error(f"unknown workload {args.workload!r}; --list shows them")
    doc = run_workload(args.framework, args.workload, args.quick, args.num_cpus)
    text = json.dumps(doc)
    if args.json == "-":
        sys.stdout.flush()
        print(text, flush=True)
    elif args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return 1 if "error" in doc else 0


if __name__ == "__main__":
    sys.exit(main())
