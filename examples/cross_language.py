"""Python, Go and Rust on one ember cluster, every way.

Starts a local cluster, exports two Python functions by name, builds and runs
the Go HTTP service in ``examples/go-scoring-service`` and the Rust SDK's
example worker (``sdk-rust/examples/worker.rs``) against the cluster, and
checks it end to end:

* ``POST /score``: Go calls the Python function ``scoring.predict`` (msgpack
  in, a dict out, decoded into a Go struct); a Python exception comes back
  as HTTP 422 naming the exception type.
* ``GET /table?rows=N``: Go calls ``scoring.table``, which returns a pyarrow
  Table (an ARROW object in the node's store), and pulls that object over
  Arrow Flight with arrow-go.
* Python calls the Go function ``go.fib``, served by the same Go process.
* ``GET /wordcount?text=...``: Go calls the Rust function ``rust.word_count``
  (a Rust worker used from Go).
* Python calls the Rust functions ``rust.add`` and ``rust.word_count`` and
  drives a ``rust.Counter`` actor hosted by the Rust worker.

Needs Go (``go`` on PATH, or ``$GO``), the ember binary (``make build``) and
the Rust example worker (``make workers``; ``$EMBER_RUST_WORKER`` names it,
else it is built with cargo).
Prints one line per check and exits non-zero on any mismatch::

    .venv/bin/python examples/cross_language.py

``--export-only`` exports the two functions into a running cluster
(``ember.init(address="auto")``) and exits, to run the service by hand
(exports stay on the node; see examples/go-scoring-service/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import ember
from ember import cross_language
from ember.exceptions import CrossLanguageError

SERVICE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go-scoring-service")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The "model" of scoring.predict: a linear score, exact in binary floating point.
WEIGHTS = [0.5, -1.0, 2.0]
BIAS = 0.25


def predict(features):
    """scoring.predict: a linear score of three features and a label."""
    if len(features) != len(WEIGHTS):
        raise ValueError(f"expected {len(WEIGHTS)} features, got {len(features)}")
    score = BIAS + sum(w * x for w, x in zip(WEIGHTS, features))
    return {"score": score, "label": "high" if score >= 1.0 else "low"}


def table(rows):
    """scoring.table: a pyarrow Table of ``rows`` rows (stored as Arrow)."""
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array(range(rows), type=pa.int64()),
            "score": pa.array([i * 0.5 for i in range(rows)], type=pa.float64()),
            "label": pa.array(["high" if i % 2 else "low" for i in range(rows)]),
        }
    )


class Checks:
    def __init__(self):
        self.count = 0
        self.failures = 0

    def expect(self, what: str, got, want) -> None:
        ok = got == want
        self.count += 1
        self.failures += not ok
        print(
            f"  {'ok  ' if ok else 'FAIL'} {what}: {got!r}"
            + ("" if ok else f" (expected {want!r})"),
            flush=True,
        )


def go_build(out_dir: str) -> subprocess.Popen:
    go = os.environ.get("GO") or shutil.which("go")
    if not go:
        sys.exit(
            "cross_language.py: Go is needed to build examples/go-scoring-service "
            "(put `go` on PATH or set GO)"
        )
    return subprocess.Popen(
        [go, "build", "-o", os.path.join(out_dir, "scoring-service"), "."],
        cwd=SERVICE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_service(binary: str, env: dict) -> tuple[subprocess.Popen, str]:
    """Run the service on a free port; return it and its base URL once it says READY."""
    proc = subprocess.Popen(
        [binary, "-listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    line = lines[0].strip() if lines else ""
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        sys.exit(
            f"cross_language.py: the Go service did not start "
            f"(exit {proc.returncode}, said {line!r})"
        )
    return proc, line.split(" ", 1)[1]


def rust_worker_binary() -> str:
    """The Rust SDK's example worker, built with cargo if it is not there."""
    path = os.environ.get("EMBER_RUST_WORKER") or os.path.join(
        ROOT, "target", "release", "examples", "worker")
    if not os.path.exists(path):
        cargo = os.environ.get("CARGO") or shutil.which("cargo")
        if not cargo:
            sys.exit("cross_language.py: the Rust example worker is missing and cargo is not "
                     "there to build it (make workers)")
        subprocess.run([cargo, "build", "--release", "-q", "-p", "ember", "--example", "worker"],
                       cwd=ROOT, check=True)
    return path


def start_rust_worker(env: dict) -> subprocess.Popen:
    """Run the Rust worker; return it once it says ready."""
    proc = subprocess.Popen([rust_worker_binary()], env=env, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    if not lines or lines[0].strip() != "ready":
        proc.kill()
        proc.wait()
        sys.exit(f"cross_language.py: the Rust worker did not start (said {lines!r})")
    return proc


def stop_service(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def main() -> int:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ember-go-scoring-") as tmp:
        build = go_build(tmp)  # compiles while the cluster starts
        try:
            ctx = ember.init(num_cpus=2)
            cross_language.export(predict, "scoring.predict")
            cross_language.export(table, "scoring.table")
            build_output, _ = build.communicate(timeout=300)
        finally:
            if build.poll() is None:
                build.kill()
                build.wait()
        if build.returncode != 0:
            print(build_output, file=sys.stderr)
            sys.exit(f"cross_language.py: go build failed (exit {build.returncode})")
        ready_s = time.perf_counter() - start

        # The service finds the node as any ember client does: by address,
        # in the session root where the node's session file is.
        env = dict(
            os.environ,
            EMBER_ADDRESS=ctx["address"],
            EMBER_TMPDIR=os.path.dirname(ctx["session_dir"].rstrip("/")),
        )
        service, url = start_service(os.path.join(tmp, "scoring-service"), env)
        rust = start_rust_worker(env)
        checks = Checks()
        try:
            print(
                f"Go service at {url}, node at {ctx['address']} "
                f"(cluster up and service built in {ready_s:.1f} s)"
            )

            print("Go -> Python: POST /score calls scoring.predict")
            for features, want in [
                ([1.0, 2.0, 3.0], {"score": 4.75, "label": "high"}),
                ([0.5, 1.0, 0.5], {"score": 0.5, "label": "low"}),
                ([-2, 0, 1], {"score": 1.25, "label": "high"}),
            ]:
                checks.expect(
                    f"score {features}",
                    http("POST", f"{url}/score", {"features": features}),
                    (200, want),
                )
            status, answer = http("POST", f"{url}/score", {"features": [1.0]})
            checks.expect(
                "a Python ValueError",
                (status, answer.get("type"), answer.get("error")),
                (422, "ValueError", "expected 3 features, got 1"),
            )
            status, _ = http("POST", f"{url}/score", {"rows": 3})
            checks.expect("a malformed body", status, 400)

            print("Go -> Python -> Arrow Flight: GET /table calls scoring.table")
            for rows in (5, 100_000):
                status, answer = http("GET", f"{url}/table?rows={rows}")
                object_id = answer.pop("object_id", "")
                answer.pop("batches", None)
                checks.expect(
                    f"table rows={rows}",
                    (status, answer),
                    (
                        200,
                        {
                            "rows": rows,
                            "columns": ["id", "score", "label"],
                            "id_sum": rows * (rows - 1) // 2,
                        },
                    ),
                )
                checks.expect(
                    f"  its object id is 40 hex digits ({object_id})",
                    len(object_id) == 40 and all(c in "0123456789abcdef" for c in object_id),
                    True,
                )

            print("Python -> Go: go.fib served by the Go service")
            fib = cross_language.go_function("go.fib")
            checks.expect("go.fib(20)", ember.get(fib.remote(20), timeout=30), 6765)
            checks.expect(
                "go.fib(0..10)",
                ember.get([fib.remote(n) for n in range(11)], timeout=30),
                [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55],
            )
            try:
                got = ember.get(fib.remote(-1), timeout=30)
            except CrossLanguageError as e:  # the Go error, with its message
                got = ("CrossLanguageError", "fib(-1): n must be in [0, 92]" in str(e))
            checks.expect("go.fib(-1) fails", got, ("CrossLanguageError", True))

            print("Go -> Rust: GET /wordcount calls rust.word_count (the Rust worker)")
            checks.expect(
                "wordcount",
                http("GET", f"{url}/wordcount?text=the+cat+and+THE+hat"),
                (200, {"the": 2, "cat": 1, "and": 1, "hat": 1}),
            )

            print("Python -> Rust: functions and an actor of the Rust worker")
            checks.expect("rust.add(40, 2)",
                          ember.get(cross_language.rust_function("rust.add").remote(40, 2),
                                    timeout=30), 42)
            counts = cross_language.rust_function("rust.word_count").remote("a b a")
            checks.expect("rust.word_count", ember.get(counts, timeout=30), {"a": 2, "b": 1})
            counter = cross_language.rust_actor_class("rust.Counter").remote(10)
            checks.expect("rust.Counter incr x3",
                          ember.get([counter.incr.remote(n) for n in (1, 2, 3)], timeout=30),
                          [11, 13, 16])
        finally:
            rust_code = stop_service(rust)
            code = stop_service(service)
            ember.shutdown()
        checks.expect("the Go service stopped cleanly", code, 0)
        checks.expect("the Rust worker stopped cleanly", rust_code, 0)

    elapsed = time.perf_counter() - start
    if checks.failures:
        print(f"FAILED: {checks.failures} of {checks.count} checks failed ({elapsed:.1f} s)")
        return 1
    print(f"All {checks.count} cross-language checks passed in {elapsed:.1f} s")
    return 0


def export_only() -> int:
    ctx = ember.init(address="auto")
    cross_language.export(predict, "scoring.predict")
    cross_language.export(table, "scoring.table")
    ember.nodes()  # a round trip: the node has taken the exports
    print(f"exported scoring.predict and scoring.table to the cluster at {ctx['address']}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="export scoring.predict and scoring.table into the running cluster and exit",
    )
    sys.exit(export_only() if parser.parse_args().export_only else main())
