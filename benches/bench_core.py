"""End-to-end benchmark of ember's core paths, from a Python driver.

Prints one line per figure, then a table of each figure against its target
(PASS/MISS) and against Ray 2.60 on the same kind of machine. See
benches/README.md for what each figure means.

Run: make bench, or .venv/bin/python benches/bench_core.py [--quick]
     [--num-cpus N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

_T_IMPORT = time.perf_counter()
import ember
import numpy as np

IMPORT_S = time.perf_counter() - _T_IMPORT

MB = 1_000_000
BIG_BYTES = 100 * MB  # 12.5 M float64
SMALL_VALUE = b"x" * 100

# name -> (target, "higher"/"lower" is better, unit, Ray 2.60 on this machine kind)
TARGETS = {
    "init_s": (0.5, "lower", "s", 4.5),
    "tasks_sync_per_s": (5_000, "higher", "/s", 320),
    "tasks_async_per_s": (30_000, "higher", "/s", 1_200),
    "put_small_per_s": (10_000, "higher", "/s", 1_300),
    "get_small_per_s": (None, "higher", "/s", None),
    "put_100mb_gbps": (3.0, "higher", "GB/s", 2.2),
    "get_100mb_gbps": (None, "higher", "GB/s", None),
    "idle_memory_pss_mb": (100, "lower", "MB", None),
    "idle_memory_rss_mb": (None, "lower", "MB", 630),
}


@ember.remote
def noop():
    return None


def report(results: dict, name: str, value: float, detail: str = "") -> None:
    results[name] = value
    unit = TARGETS.get(name, (None, None, "", None))[2]
    print(f"{name:<22} {fmt(value, unit):>14}  {detail}", flush=True)


def fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "GB/s":
        return f"{value:,.2f} GB/s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:g}"


def timed_loop(fn, max_iters: int, max_s: float) -> tuple[int, float]:
    """Call fn() until max_iters calls or max_s seconds; return (calls, seconds)."""
    n = 0
    start = time.perf_counter()
    deadline = start + max_s
    while n < max_iters:
        fn()
        n += 1
        if n % 50 == 0 and time.perf_counter() > deadline:
            break
    return n, time.perf_counter() - start


# -- the figures ----------------------------------------------------------


def bench_init(results: dict, args) -> None:
    """Median of 3 fresh init/shutdown cycles, before anything else runs."""
    times, firsts, stops = [], [], []
    for _ in range(3):
        start = time.perf_counter()
        ember.init(num_cpus=args.num_cpus)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ember.get(noop.remote())
        firsts.append(time.perf_counter() - start)
        start = time.perf_counter()
        ember.shutdown()
        stops.append(time.perf_counter() - start)
    report(results, "init_s", statistics.median(times),
           "median of 3 fresh init() (each " + ", ".join(f"{t:.3f}" for t in times)
           + f" s; import ember {IMPORT_S:.3f} s; then first task "
           + f"{statistics.median(firsts):.3f} s, shutdown() {statistics.median(stops):.3f} s)")
    results["first_task_after_init_s"] = statistics.median(firsts)
    results["shutdown_s"] = statistics.median(stops)


def bench_tasks_sync(results: dict, args) -> None:
    ember.get([noop.remote() for _ in range(200)])  # workers up, function registered
    for _ in range(200):
        ember.get(noop.remote())
    n, secs = timed_loop(lambda: ember.get(noop.remote()), 500 if args.quick else 2000,
                         1.0 if args.quick else 3.0)
    report(results, "tasks_sync_per_s", n / secs,
           f"submit one empty task + get, {n} times in {secs:.2f} s "
           f"({secs / n * 1e6:.0f} us round trip)")


def bench_tasks_async(results: dict, args) -> None:
    n = 2_000 if args.quick else 10_000
    reps = 2 if args.quick else 3
    ember.get([noop.remote() for _ in range(1000)])
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        refs = [noop.remote() for _ in range(n)]
        submitted = time.perf_counter() - start
        values = ember.get(refs)
        secs = time.perf_counter() - start
        assert len(values) == n and values[0] is None
        del refs, values
        rates.append(n / secs)
        print(f"  {n} empty tasks: submitted in {submitted:.3f} s, all results in {secs:.3f} s "
              f"({n / secs:,.0f}/s)", flush=True)
    report(results, "tasks_async_per_s", max(rates),
           f"best of {reps} x {n} tasks submitted then one get; "
           f"median {statistics.median(rates):,.0f}/s")
    results["tasks_async_median_per_s"] = statistics.median(rates)


def bench_small_objects(results: dict, args) -> None:
    max_iters = 5_000 if args.quick else 20_000
    max_s = 1.0 if args.quick else 2.0
    for _ in range(500):
        ember.put(SMALL_VALUE)
    n, secs = timed_loop(lambda: ember.put(SMALL_VALUE), max_iters, max_s)
    report(results, "put_small_per_s", n / secs,
           f"put of {len(SMALL_VALUE)} bytes (ref dropped), {n} times in {secs:.2f} s")

    ref = ember.put(SMALL_VALUE)
    assert ember.get(ref) == SMALL_VALUE
    n, secs = timed_loop(lambda: ember.get(ref), max_iters, max_s)
    report(results, "get_small_per_s", n / secs,
           f"get of one put {len(SMALL_VALUE)}-byte ref, {n} times in {secs:.2f} s")


def store_used_mb() -> float:
    return sum(n["ObjectStoreUsed"] for n in ember.nodes()) / MB


def bench_big_objects(results: dict, args) -> None:
    reps = 4 if args.quick else 10
    array = np.arange(BIG_BYTES // 8, dtype=np.float64)  # pages touched: a real 100 MB
    assert array.nbytes == BIG_BYTES
    used_before = store_used_mb()

    put_times = []
    for _ in range(reps):
        start = time.perf_counter()
        ref = ember.put(array)
        put_times.append(time.perf_counter() - start)
        del ref  # freed, so the next put can reuse the memory
    gbps = [BIG_BYTES / 1e9 / t for t in put_times]
    report(results, "put_100mb_gbps", statistics.median(gbps),
           f"median of {reps} puts of a 100 MB float64 array (first {gbps[0]:.2f}, "
           f"best {max(gbps):.2f} GB/s; {statistics.median(put_times) * 1e3:.1f} ms each)")
    time.sleep(0.2)
    used_after = store_used_mb()
    print(f"  object store in use: {used_before:.0f} MB before the puts, "
          f"{used_after:.0f} MB after {reps} puts with their refs dropped", flush=True)
    results["store_used_after_puts_mb"] = used_after

    ref = ember.put(array)
    first = ember.get(ref)
    zero_copy = (isinstance(first, np.ndarray) and not first.flags.owndata
                 and not first.flags.writeable)
    assert first.shape == array.shape and first[12345] == 12345.0 and first[-1] == array[-1]
    del first
    get_times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = ember.get(ref)
        get_times.append(time.perf_counter() - start)
        zero_copy = zero_copy and not out.flags.owndata
        del out
    gbps = [BIG_BYTES / 1e9 / t for t in get_times]
    report(results, "get_100mb_gbps", statistics.median(gbps),
           f"median of {reps} gets of one put 100 MB array "
           f"({statistics.median(get_times) * 1e6:.0f} us each; zero-copy: "
           f"{'yes, a read-only view of shared memory' if zero_copy else 'NO'})")
    results["get_100mb_zero_copy"] = zero_copy
    del ref


def ember_processes(psutil):
    """The node process started by init() and all its descendants."""
    from ember._private import api

    node = getattr(api, "_local_node", None)
    if node is not None:
        root = psutil.Process(node.process.pid)
    else:  # no handle (private API changed): the driver's child named ember
        roots = [p for p in psutil.Process().children() if p.name() == "ember"]
        if not roots:
            raise RuntimeError("cannot find the ember node process")
        root = roots[0]
    return [root] + root.children(recursive=True)


def bench_idle_memory(results: dict, args) -> None:
    try:
        import psutil
    except ImportError:
        print("idle memory: skipped (psutil is not installed; `make venv` installs it)")
        return
    time.sleep(1.0 if args.quick else 2.0)
    rss = pss = 0
    rows = []
    for proc in ember_processes(psutil):
        try:
            info = proc.memory_full_info()
            name = " ".join(proc.cmdline()[:3]) or proc.name()
        except psutil.NoSuchProcess:  # exited meanwhile
            continue
        rss += info.rss
        pss += info.pss
        rows.append(f"    pid {proc.pid:>7}  rss {info.rss / MB:7.1f} MB  "
                    f"pss {info.pss / MB:7.1f} MB  {name[:70]}")
    print(f"  {len(rows)} ember processes after idling (node + descendants):")
    print("\n".join(rows))
    report(results, "idle_memory_pss_mb", pss / MB,
           "PSS sum (shared pages split fairly between the processes sharing them)")
    report(results, "idle_memory_rss_mb", rss / MB,
           "RSS sum (counts pages shared by forked workers once per process)")
    results["idle_processes"] = len(rows)


# -- main -----------------------------------------------------------------


def passes(name: str, value) -> bool | None:
    target, better, _, _ = TARGETS[name]
    if target is None or value is None:
        return None
    return value >= target if better == "higher" else value <= target


def print_table(results: dict) -> None:
    print()
    print(f"{'figure':<22} {'ember':>14} {'target':>14} {'':>5} {'Ray 2.60':>12}")
    for name, (target, better, unit, ray) in TARGETS.items():
        value = results.get(name)
        ok = passes(name, value)
        mark = "" if ok is None else ("PASS" if ok else "MISS")
        cmp = ">=" if better == "higher" else "<="
        tgt = f"{cmp} {fmt(target, unit)}" if target is not None else "-"
        print(f"{name:<22} {fmt(value, unit):>14} {tgt:>14} {mark:>5} {fmt(ray, unit):>12}")
    print("(idle memory: the target applies to the PSS sum; Ray's 630 MB figure is RSS)")


def main() -> int:
    parser = argparse.ArgumentParser(description="ember end-to-end core benchmark")
    parser.add_argument("--quick", action="store_true", help="shorter run (CI smoke check)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args()

    print(f"ember {ember.__version__} benchmark: Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs on this machine, cluster --num-cpus {args.num_cpus}"
          f"{', quick' if args.quick else ''}", flush=True)
    results: dict = {}
    bench_init(results, args)
    ember.init(num_cpus=args.num_cpus)
    try:
        bench_tasks_sync(results, args)
        bench_tasks_async(results, args)
        bench_small_objects(results, args)
        bench_big_objects(results, args)
        bench_idle_memory(results, args)
    finally:
        ember.shutdown()
    print_table(results)

    if args.json:
        doc = {
            "figures": results,
            "targets": {k: v[0] for k, v in TARGETS.items() if v[0] is not None},
            "pass": {k: passes(k, results.get(k)) for k in TARGETS if TARGETS[k][0] is not None},
            "ray_2_60": {k: v[3] for k, v in TARGETS.items() if v[3] is not None},
            "config": {"quick": args.quick, "num_cpus": args.num_cpus,
                       "machine_cpus": os.cpu_count(), "python": platform.python_version(),
                       "ember": ember.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
