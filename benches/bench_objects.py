"""End-to-end benchmark of the object store from a Python driver.

Figures: put and get of a 100 MB numpy array and of a 100 MB Arrow table,
a task returning 100 MB, a plain `pyarrow.flight` do_get of 100 MB from the
node's port (loopback), put/get of small values, and spilling: 3 GB of live
100 MB objects put into a 1 GB store (the rest spills to disk), then read
back (each restored from disk). Printed against the targets of the
object-store issue.

Run: make bench, or .venv/bin/python benches/bench_objects.py [--quick]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time

import ember
import numpy as np
import pyarrow as pa
from pyarrow import flight

MB = 1_000_000
SIZE = 100 * MB

# name -> (target, unit)
TARGETS = {
    "put_100mb_numpy_gbps": (4.0, "GB/s"),
    "get_100mb_numpy_us": (None, "us"),
    "put_100mb_arrow_gbps": (None, "GB/s"),
    "get_100mb_arrow_us": (None, "us"),
    "task_return_100mb_gbps": (3.0, "GB/s"),
    "flight_do_get_100mb_gbps": (1.2, "GB/s"),
    "put_small_per_s": (None, "/s"),
    "get_small_per_s": (None, "/s"),
    "put_spilling_gbps": (None, "GB/s"),
    "get_spilled_gbps": (None, "GB/s"),
}


@ember.remote
def make_array(n):
    return np.ones(n // 8)


def report(results, name, value, detail=""):
    results[name] = value
    unit = TARGETS[name][1]
    print(f"{name:<26} {value:>12,.2f} {unit:<5} {detail}", flush=True)


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def session():
    node_id = ember.get_runtime_context().get_node_id()
    root = os.environ.get("EMBER_TMPDIR") or f"/tmp/ember-{os.getuid()}"
    for path in glob.glob(os.path.join(root, "session_*", "session.json")):
        with open(path) as f:
            info = json.load(f)
        if info["node_id"] == node_id:
            return info
    raise RuntimeError("session file not found")


def bench_spilling(results: dict, quick: bool) -> None:
    """Live objects three times the store's size: puts spill older objects,
    gets restore them (each restore spills another)."""
    count, store = (6, 256 << 20) if quick else (30, 1 << 30)
    ember.init(num_cpus=1, object_store_memory=store)
    try:
        arrays = [np.full(SIZE // 8, i, dtype=np.float64) for i in range(count)]
        ember.get(ember.put(arrays[0]))  # warm the arena
        t0 = time.perf_counter()
        refs = [ember.put(a) for a in arrays]
        seconds = time.perf_counter() - t0
        stats = ember.object_store_stats()
        report(results, "put_spilling_gbps", count * SIZE / 1e9 / seconds,
               f"{count} x 100 MB live in a {store >> 20} MiB store; {stats['num_spilled']} spilled")
        t0 = time.perf_counter()
        for i, ref in enumerate(refs):
            assert ember.get(ref)[0] == i
        seconds = time.perf_counter() - t0
        report(results, "get_spilled_gbps", count * SIZE / 1e9 / seconds,
               "each get restores from disk (and spills another)")
    finally:
        ember.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 3 if args.quick else 10
    results: dict = {}
    ember.init(num_cpus=2)
    try:
        array = np.ones(SIZE // 8)
        ember.get(ember.put(array))  # warm the arena
        seconds = timed(lambda: ember.put(array), repeat)
        report(results, "put_100mb_numpy_gbps", SIZE / 1e9 / seconds, f"median of {repeat}")
        ref = ember.put(array)
        ember.get(ref)
        report(results, "get_100mb_numpy_us", timed(lambda: ember.get(ref), repeat) * 1e6, "zero-copy")
        ref = None  # let the array go

        table = pa.table({"x": np.ones(SIZE // 8)})
        ember.get(ember.put(table))
        seconds = timed(lambda: ember.put(table), repeat)
        report(results, "put_100mb_arrow_gbps", table.nbytes / 1e9 / seconds, f"median of {repeat}")
        tref = ember.put(table)
        ember.get(tref)
        report(results, "get_100mb_arrow_us", timed(lambda: ember.get(tref), repeat) * 1e6, "buffers in shm")

        ember.get(make_array.remote(SIZE))
        seconds = timed(lambda: ember.get(make_array.remote(SIZE)), repeat)
        report(results, "task_return_100mb_gbps", SIZE / 1e9 / seconds,
               "task makes np.ones(100 MB) and returns it; includes the task's own fill")

        info = session()
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {info['token']}".encode())])
        client = flight.connect(f"grpc://{info['address']}")
        ticket = flight.Ticket(tref.hex().encode())
        client.do_get(ticket, options).read_all()
        seconds = timed(lambda: client.do_get(ticket, options).read_all(), repeat)
        report(results, "flight_do_get_100mb_gbps", table.nbytes / 1e9 / seconds, "pyarrow.flight, loopback")

        n = 2000 if args.quick else 20000
        t0 = time.perf_counter()
        for _ in range(n):
            ember.put(b"x" * 100)
        report(results, "put_small_per_s", n / (time.perf_counter() - t0))
        small = ember.put(b"x" * 100)
        t0 = time.perf_counter()
        for _ in range(n):
            ember.get(small)
        report(results, "get_small_per_s", n / (time.perf_counter() - t0))
    finally:
        ember.shutdown()
    bench_spilling(results, quick=args.quick)
    print()
    for name, (target, unit) in TARGETS.items():
        if target is None:
            continue
        value = results.get(name, 0)
        print(f"{name:<26} {value:>10,.2f} {unit:<5} target >= {target} {'PASS' if value >= target else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
