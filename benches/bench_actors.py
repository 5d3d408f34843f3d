"""End-to-end benchmark of actor calls from a Python driver.

Figures: actor_calls_sync (one caller, one actor: call then get, repeated),
actor_calls_async (10,000 calls, then get all), actor_calls_n_to_n (N caller
tasks each calling its own actor, all at once), actor_create_per_s (create
100 actors, each answers one call). Printed against the targets and Ray 2.60
on the same kind of machine.

Run: make bench, or .venv/bin/python benches/bench_actors.py [--quick] [--num-cpus N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import ember

# name -> (target, Ray 2.60 on this machine kind)
TARGETS = {
    "actor_calls_sync_per_s": (5_000, 970),
    "actor_calls_async_per_s": (30_000, 2_070),
    "actor_calls_n_to_n_per_s": (None, None),
    "actor_create_per_s": (100, 1.3),
}


@ember.remote
class Sink:
    def ping(self):
        return None


@ember.remote(num_cpus=1)
def caller(actor, n):
    refs = [actor.ping.remote() for _ in range(n)]
    ember.get(refs)
    return n


def report(results, name, value, detail=""):
    results[name] = value
    print(f"{name:<26} {value:>12,.0f}/s  {detail}", flush=True)


def bench_sync(results, args):
    actor = Sink.remote()
    ember.get(actor.ping.remote())
    for _ in range(200):
        ember.get(actor.ping.remote())
    n = 500 if args.quick else 3000
    t0 = time.perf_counter()
    for _ in range(n):
        ember.get(actor.ping.remote())
    dt = time.perf_counter() - t0
    report(results, "actor_calls_sync_per_s", n / dt, f"call + get, {n} times ({dt / n * 1e6:.0f} us round trip)")


def bench_async(results, args):
    actor = Sink.remote()
    ember.get([actor.ping.remote() for _ in range(1000)])
    n = 2000 if args.quick else 10_000
    rates = []
    for _ in range(2 if args.quick else 3):
        t0 = time.perf_counter()
        ember.get([actor.ping.remote() for _ in range(n)])
        rates.append(n / (time.perf_counter() - t0))
    report(results, "actor_calls_async_per_s", max(rates),
           f"best of {len(rates)} x {n} calls then one get; median {statistics.median(rates):,.0f}/s")


def bench_n_to_n(results, args):
    pairs = args.num_cpus
    actors = [Sink.remote() for _ in range(pairs)]
    ember.get([a.ping.remote() for a in actors])
    n = 1000 if args.quick else 5000
    t0 = time.perf_counter()
    done = sum(ember.get([caller.remote(a, n) for a in actors]))
    dt = time.perf_counter() - t0
    report(results, "actor_calls_n_to_n_per_s", done / dt, f"{pairs} caller tasks x {n} calls to their own actor")
    for a in actors:
        ember.kill(a)


def bench_create(results, args):
    n = 20 if args.quick else 100
    t0 = time.perf_counter()
    actors = [Sink.remote() for _ in range(n)]
    ember.get([a.ping.remote() for a in actors])
    dt = time.perf_counter() - t0
    report(results, "actor_create_per_s", n / dt, f"{n} actors created, each answered one call, in {dt:.2f} s")
    for a in actors:
        ember.kill(a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI smoke check)")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    results: dict = {}
    ember.init(num_cpus=args.num_cpus)
    try:
        bench_sync(results, args)
        bench_async(results, args)
        bench_n_to_n(results, args)
        bench_create(results, args)
    finally:
        ember.shutdown()
    print()
    print(f"{'figure':<26} {'ember':>12}  {'target':>12}        {'Ray 2.60':>10}")
    for name, (target, ray) in TARGETS.items():
        value = results.get(name)
        mark = "" if target is None or value is None else ("PASS" if value >= target else "MISS")
        tgt = "-" if target is None else f">= {target:,}/s"
        ray_s = "-" if ray is None else f"{ray:,}/s"
        print(f"{name:<26} {value or 0:>10,.0f}/s  {tgt:>12}  {mark:<4}  {ray_s:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
