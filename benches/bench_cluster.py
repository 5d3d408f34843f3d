"""Cluster benchmark: several real nodes on this machine (127.0.0.x).

Figures (multi-node issue):
- a task on another node returning 100 MB, end to end, against the same
  task run on the driver's node; the difference is the transfer (pulled
  over Arrow Flight), reported in GB/s;
- tasks/s from one driver spread over 4 nodes (SPREAD);
- time from a node's SIGKILL to the first of its tasks running again
  elsewhere (default heartbeat settings);
- head restart on its storage (--storage DIR): time until the restarted
  head answers with its nodes alive, and until a detached named actor is
  found again through it and answers.

Run: make bench (through benches/bench_all.py), or
     .venv/bin/python benches/bench_cluster.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import ember
import numpy as np

MB = 1_000_000
TARGETS = {"transfer_100mb_gbps": 1.2, "node_death_to_retry_s": 2.0}


def ember_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ember")
    return beside if os.access(beside, os.X_OK) else (shutil.which("ember") or "ember")


class Node:
    def __init__(self, args: list[str], root: str, env: dict | None = None):
        self.ready = tempfile.mktemp(prefix="ready-", dir=root)
        port = [] if "--port" in args else ["--port", "0"]
        self.log = open(self.ready + ".log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([ember_binary(), "start", "--block", *port, "--ready-file", self.ready, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, EMBER_TMPDIR=root, **(env or {})))
        deadline = time.monotonic() + 60
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start; see {self.log.name}")
            time.sleep(0.01)
        time.sleep(0.02)
        with open(self.ready) as f:
            self.info = json.load(f)
        self.address = self.info["address"]

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_until(predicate, timeout=60.0, step=0.01):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(step)


def alive_addresses():
    return {n["NodeManagerAddress"] for n in ember.nodes() if n["Alive"]}


@ember.remote
def make(n):
    return np.ones(n // 8)


@ember.remote
def noop():
    return 0


@ember.remote
def sleeper(seconds):
    started = time.time()
    time.sleep(seconds)
    return ember.get_runtime_context().get_node_id(), started


@ember.remote
class Keeper:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n


def report(results, name, value, unit, detail=""):
    results[name] = value
    print(f"{name:<28} {value:>12,.3f} {unit:<6} {detail}", flush=True)


def run(quick: bool) -> dict:
    """Start the cluster, measure, stop it; the figures by name."""
    repeat = 3 if quick else 7
    root = tempfile.mkdtemp(prefix="ember-bench-cluster-")
    results: dict = {}
    nodes: list[Node] = []
    try:
        storage = os.path.join(root, "head-tables")
        head = Node(["--head", "--num-cpus", "1", "--storage", storage], root)
        nodes.append(head)
        for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            nodes.append(Node(["--address", head.address, "--node-ip", ip, "--num-cpus", "1"], root))
        os.environ["EMBER_TMPDIR"] = root
        ember.init(address=head.address)
        wait_until(lambda: len(alive_addresses()) == 4)
        from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ids = {n["NodeManagerAddress"]: n["NodeID"] for n in ember.nodes()}
        here = make.options(scheduling_strategy=NodeAffinitySchedulingStrategy(ids["127.0.0.1"], soft=False))
        there = make.options(scheduling_strategy=NodeAffinitySchedulingStrategy(ids["127.0.0.2"], soft=False))
        for f in (here, there):
            ember.get(f.remote(100 * MB))  # warm up workers and arenas

        def timed(f):
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                value = ember.get(f.remote(100 * MB))
                times.append(time.perf_counter() - t0)
                del value
            return statistics.median(times)

        local_s, remote_s = timed(here), timed(there)
        report(results, "task_100mb_local_s", local_s, "s", "task on the driver's node returning 100 MB")
        report(results, "task_100mb_remote_s", remote_s, "s", "the same task on another node")
        report(results, "transfer_100mb_gbps", 0.1 / max(remote_s - local_s, 1e-6), "GB/s",
               "100 MB / (remote - local): the pull over Flight and the extra hops")

        n = 1000 if quick else 4000
        spread = noop.options(scheduling_strategy="SPREAD")
        ember.get([spread.remote() for _ in range(200)])
        t0 = time.perf_counter()
        ember.get([spread.remote() for _ in range(n)])
        report(results, "spread_tasks_per_s", n / (time.perf_counter() - t0), "/s", f"{n} empty tasks over 4 nodes")
        ember.shutdown()

        # Node death: tasks on the 4th node run again elsewhere.
        ember.init(address=head.address)
        victim = nodes[-1]
        on_victim = sleeper.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(ids["127.0.0.4"], soft=True))
        refs = [on_victim.remote(1.0) for _ in range(2)]
        time.sleep(0.5)
        killed_at = time.time()
        victim.kill()
        outcomes = ember.get(refs, timeout=120)
        restarted = min(started for node, started in outcomes
                        if node != ids["127.0.0.4"] and started >= killed_at)
        report(results, "node_death_to_retry_s", restarted - killed_at, "s",
               "SIGKILL to the first of its tasks running on another node")
        ember.shutdown()

        # Head restart on its storage: a detached named actor made from the
        # second node is found again through the restarted head.
        ember.init(address=nodes[1].address)
        keeper = Keeper.options(name="bench-keeper", namespace="bench", lifetime="detached").remote()
        ember.get(keeper.bump.remote())
        ember.shutdown()
        port = int(head.address.rsplit(":", 1)[1])
        head.kill()
        t0 = time.perf_counter()
        new_head = Node(["--head", "--port", str(port), "--num-cpus", "1", "--storage", storage], root)
        nodes[0] = new_head
        ember.init(address=new_head.address)
        wait_until(lambda: "127.0.0.2" in alive_addresses(), timeout=60)
        report(results, "head_restart_rejoin_s", time.perf_counter() - t0, "s",
               "head SIGKILLed and started again on its storage: until it answers with the nodes alive")
        ember.shutdown()
        ember.init(address=nodes[2].address)
        found = ember.get(ember.get_actor("bench-keeper", namespace="bench").bump.remote())
        report(results, "head_restart_recovery_s", time.perf_counter() - t0, "s",
               f"... until a driver on a third node found the named actor again (state kept: {found == 2})")
        ember.shutdown()
    finally:
        if ember.is_initialized():
            ember.shutdown()
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args()
    results = run(args.quick)
    print()
    for name, target in TARGETS.items():
        value = results.get(name)
        if value is None:
            continue
        ok = value >= target if name.endswith("gbps") else value <= target
        print(f"{name:<28} {value:>10,.2f}  target {'>=' if name.endswith('gbps') else '<='} {target} "
              f"{'PASS' if ok else 'MISS'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"figures": results, "targets": TARGETS, "quick": args.quick}, f, indent=2)
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    sys.exit(main())
