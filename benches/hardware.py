"""What the hardware allows: the floors and ceilings ember's figures sit on.

    .venv/bin/python benches/hardware.py [--quick] [--json PATH]

- ``uds_round_trip_us``: a 1-byte ping-pong between two processes over a
  Unix-domain socket pair, in C (compiled at run time with the system C
  compiler into a temporary directory; without one, the same in Python,
  which adds the interpreter's own cost and says so): runs of 20,000 round
  trips. Any sync call from a Python driver (task or actor) needs at least
  two of these: driver -> node -> worker and back. Measured where the kernel
  puts the two processes, then pinned to one CPU and to two CPUs (in a VM a
  wake-up on another, idle vCPU can cost far more than a switch on one).
- ``shm_write_warm_gbps``: copying a 100 MB buffer (numpy, already in memory)
  into a 100 MB shared-memory mapping (a file in /dev/shm) whose pages were
  already written once: what a put into the store's warm arena can reach.
  The first copy into fresh pages (page faults) is reported beside it.
- ``tcp_loopback_gbps``: one TCP stream over 127.0.0.1 between two
  processes, 1 MiB sends, 1 GB in all: the ceiling of a node-to-node pull on
  one machine (the cluster bench's nodes are on 127.0.0.1-4).

Each figure is the best of several runs, what the hardware allows when
nothing else gets in the way; the median is printed (and written) beside it
to show the noise. Other work on the machine slows all three, the round
trip most (a busy core delays every wake-up).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

MB = 1_000_000
MIB = 1 << 20

C_PING_PONG = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 20000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    int parent_cpu = argc > 3 ? atoi(argv[3]) : -1;  /* -1: wherever the kernel puts it */
    int child_cpu = argc > 4 ? atoi(argv[4]) : -1;
    int sv[2];
    char b = 'x';
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) { perror("socketpair"); return 1; }
    pid_t pid = fork();
    if (pid == 0) {
        pin(child_cpu);
        close(sv[0]);
        while (read(sv[1], &b, 1) == 1) {
            if (write(sv[1], &b, 1) != 1) break;
        }
        _exit(0);
    }
    pin(parent_cpu);
    close(sv[1]);
    for (int i = 0; i < 1000; i++) {  /* warm up */
        if (write(sv[0], &b, 1) != 1 || read(sv[0], &b, 1) != 1) return 1;
    }
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (int i = 0; i < iters; i++) {
            if (write(sv[0], &b, 1) != 1 || read(sv[0], &b, 1) != 1) return 1;
        }
        printf("%.3f\n", (now() - t0) / iters * 1e6);  /* us per round trip */
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    return 0;
}
"""


def uds_round_trip_c(iters: int, runs: int) -> dict[str, list[float]] | None:
    """Round trips (us) per placement: unpinned, both on one CPU, on two CPUs."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    placements = {"unpinned": ["-1", "-1"], "same_cpu": ["0", "0"]}
    if (os.cpu_count() or 1) > 1:
        placements["two_cpus"] = ["0", "1"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="ember-hw-") as tmp:
        src, exe = os.path.join(tmp, "pingpong.c"), os.path.join(tmp, "pingpong")
        with open(src, "w") as f:
            f.write(C_PING_PONG)
        subprocess.run([cc, "-O2", "-o", exe, src], check=True)
        for name, cpus in placements.items():
            out = subprocess.run([exe, str(iters), str(runs), *cpus], check=True,
                                 capture_output=True, text=True)
            results[name] = [float(line) for line in out.stdout.split()]
        if "two_cpus" in placements and hasattr(os, "SCHED_IDLE"):
            # Unpinned again, with a SCHED_IDLE spinner on each CPU as the
            # node's keep-awake threads run during traffic: no CPU halts.
            stop = mp.get_context("fork").Event()
            spinners = [mp.get_context("fork").Process(target=_idle_spinner, args=(cpu, stop), daemon=True)
                        for cpu in (0, 1)]
            for proc in spinners:
                proc.start()
            try:
                time.sleep(0.2)
                out = subprocess.run([exe, str(iters), str(runs), *placements["unpinned"]], check=True,
                                     capture_output=True, text=True)
                results["unpinned_awake"] = [float(line) for line in out.stdout.split()]
            finally:
                stop.set()
                for proc in spinners:
                    proc.join(5)
        if "two_cpus" in placements and _can_hold_latency_request():
            # As the node's keep-awake thread in its `poll` mode: a 0 us CPU
            # latency request held, so idle CPUs poll in the kernel.
            fd = os.open(LATENCY_DEVICE, os.O_WRONLY)
            try:
                os.write(fd, (0).to_bytes(4, sys.byteorder, signed=True))
                for name in ("unpinned", "two_cpus"):
                    out = subprocess.run([exe, str(iters), str(runs), *placements[name]], check=True,
                                         capture_output=True, text=True)
                    results[f"{name}_poll_idle"] = [float(line) for line in out.stdout.split()]
            finally:
                os.close(fd)
    return results


LATENCY_DEVICE = "/dev/cpu_dma_latency"


def _can_hold_latency_request() -> bool:
    try:
        os.close(os.open(LATENCY_DEVICE, os.O_WRONLY))
        return True
    except OSError:
        return False


def _idle_spinner(cpu: int, stop) -> None:
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    while not stop.is_set():
        for _ in range(10_000):
            pass


def _echo(sock: socket.socket) -> None:
    while True:
        b = sock.recv(1)
        if not b:
            return
        sock.sendall(b)


def uds_round_trip_python(iters: int, runs: int) -> list[float]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = mp.get_context("fork").Process(target=_echo, args=(b,))
    child.start()
    b.close()
    for _ in range(1000):
        a.sendall(b"x")
        a.recv(1)
    results = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(iters):
            a.sendall(b"x")
            a.recv(1)
        results.append((time.perf_counter() - start) / iters * 1e6)
    a.close()
    child.join()
    return results


def shm_write(size: int, reps: int) -> tuple[float, list[float]]:
    """(GB/s of the first copy into fresh shared memory, GB/s of each warm copy)."""
    import mmap

    src = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    fd, path = tempfile.mkstemp(prefix="ember-hw-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size)
        dst = np.frombuffer(m, dtype=np.uint8)
        start = time.perf_counter()
        np.copyto(dst, src)
        cold = size / 1e9 / (time.perf_counter() - start)
        rates = []
        for _ in range(reps):
            start = time.perf_counter()
            np.copyto(dst, src)
            rates.append(size / 1e9 / (time.perf_counter() - start))
        del dst
        m.close()
    finally:
        os.close(fd)
        os.unlink(path)
    return cold, rates


def _tcp_sink(port_queue, total: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port_queue.put(server.getsockname()[1])
    conn, _ = server.accept()
    buf = bytearray(MIB)
    view = memoryview(buf)
    got = 0
    while got < total:
        n = conn.recv_into(view)
        if n == 0:
            break
        got += n
    conn.sendall(b"k")
    conn.close()
    server.close()


def tcp_loopback(total: int) -> float:
    total = max(1, total // MIB) * MIB  # whole chunks: the sink waits for exactly this
    ctx = mp.get_context("fork")
    ports = ctx.Queue()
    child = ctx.Process(target=_tcp_sink, args=(ports, total))
    child.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=10)))
    chunk = bytes(MIB)
    sent = 0
    start = time.perf_counter()
    while sent < total:
        sock.sendall(chunk)
        sent += len(chunk)
    sock.recv(1)  # the sink has it all
    secs = time.perf_counter() - start
    sock.close()
    child.join()
    return sent / 1e9 / secs


def measure(quick: bool) -> dict:
    """Each figure's best run (what the hardware allows) and median run."""
    out: dict = {}
    iters, runs = (5_000, 3) if quick else (20_000, 7)
    placements = uds_round_trip_c(iters, runs)
    how = "C, socketpair + fork"
    if placements is None:
        placements = {"unpinned": uds_round_trip_python(iters, runs)}
        how = "Python (no C compiler found: includes the interpreter's cost)"
    rtts = placements["unpinned"]
    out["uds_round_trip_us"], out["uds_round_trip_us_median"] = min(rtts), statistics.median(rtts)
    print(f"uds_round_trip_us     {min(rtts):8.2f} us   1-byte ping-pong over a Unix socket pair "
          f"({how}): best of {runs} x {iters} (median {statistics.median(rtts):.2f})", flush=True)
    labels = {
        "same_cpu": "pinned, same cpu",
        "two_cpus": "pinned, two cpus",
        "unpinned_awake": "not pinned, a SCHED_IDLE spinner on each CPU (the node's keep-awake `spin` mode)",
        "unpinned_poll_idle": "not pinned, a 0 us CPU latency request held (the keep-awake `poll` mode)",
        "two_cpus_poll_idle": "pinned, two cpus, a 0 us CPU latency request held",
    }
    for name, label in labels.items():
        if name in placements:
            best = min(placements[name])
            out[f"uds_round_trip_{name}_us"] = best
            print(f"  {label}: {best:.2f} us (median "
                  f"{statistics.median(placements[name]):.2f})", flush=True)
    cold, warm = shm_write(100 * MB, 3 if quick else 10)
    out["shm_write_warm_gbps"], out["shm_write_warm_gbps_median"] = max(warm), statistics.median(warm)
    out["shm_write_cold_gbps"] = cold
    print(f"shm_write_warm_gbps   {max(warm):8.2f} GB/s copy of 100 MB into already-written shared "
          f"memory: best of {len(warm)} (median {statistics.median(warm):.2f}); the first copy, "
          f"into fresh pages: {cold:.2f}", flush=True)
    size = (256 if quick else 1000) * MB
    tcp = [tcp_loopback(size) for _ in range(2 if quick else 3)]
    out["tcp_loopback_gbps"], out["tcp_loopback_gbps_median"] = max(tcp), statistics.median(tcp)
    print(f"tcp_loopback_gbps     {max(tcp):8.2f} GB/s one TCP stream over 127.0.0.1, 1 MiB sends, "
          f"{size // MB} MB: best of {len(tcp)} (median {statistics.median(tcp):.2f})", flush=True)
    best_rtt = min(min(v) for v in placements.values())
    out["sync_call_ceiling_per_s"] = 1e6 / (2 * best_rtt)
    out["sync_call_ceiling_unpinned_per_s"] = 1e6 / (2 * out["uds_round_trip_us"])
    awake = ""
    if "unpinned_awake" in placements:
        out["sync_call_ceiling_awake_per_s"] = 1e6 / (2 * statistics.median(placements["unpinned_awake"]))
        awake = f"; with spinners, median: {out['sync_call_ceiling_awake_per_s']:,.0f}/s"
    if "unpinned_poll_idle" in placements:
        out["sync_call_ceiling_poll_idle_per_s"] = 1e6 / (2 * statistics.median(placements["unpinned_poll_idle"]))
        awake += f"; with idle CPUs polling, median: {out['sync_call_ceiling_poll_idle_per_s']:,.0f}/s"
    print(f"  => a sync task or actor call (2 socket round trips at least) cannot beat "
          f"{out['sync_call_ceiling_per_s']:,.0f}/s from one Python driver (processes where the "
          f"kernel puts them: {out['sync_call_ceiling_unpinned_per_s']:,.0f}/s{awake})", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    out = measure(args.quick)
    if args.json:
        out["config"] = {"quick": args.quick, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
