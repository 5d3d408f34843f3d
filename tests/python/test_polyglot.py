"""Python calling Go and Rust: functions and actors served by the example
workers of the two SDKs (sdk-go/cmd/worker and sdk-rust/examples/worker.rs,
real processes connected to the test's node), their errors as Python
exceptions, and a Go actor that survives the SIGKILL of the process hosting
it by restarting on another one.

`make test` builds both workers first (`make workers`); run alone, the tests
build the Go one with `go build` and skip those of a worker that cannot be
built, except under CI=true, where a missing worker fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading

import ember
import pytest
from ember import cross_language
from ember.exceptions import ActorDiedError, CrossLanguageError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CI = os.environ.get("CI") == "true"


def _missing(what: str):
    if CI:
        pytest.fail(f"{what} (make workers builds it)")
    pytest.skip(what)


def _go_worker_binary(tmp: str) -> str:
    path = os.environ.get("EMBER_GO_WORKER") or os.path.join(ROOT, "target", "go-worker")
    if os.path.exists(path):
        return path
    go = os.environ.get("GO") or shutil.which("go")
    if not go:
        _missing("no Go toolchain to build sdk-go/cmd/worker")
    out = os.path.join(tmp, "go-worker")
    subprocess.run([go, "build", "-o", out, "./cmd/worker"], cwd=os.path.join(ROOT, "sdk-go"),
                   check=True, timeout=600)
    return out


def _rust_worker_binary() -> str:
    path = os.environ.get("EMBER_RUST_WORKER") or os.path.join(
        ROOT, "target", "release", "examples", "worker")
    if not os.path.exists(path):
        _missing(f"no Rust example worker at {path}")
    return path


def _node_address() -> str:
    """This test's node: its address picks its session on this machine."""
    node_id = ember.get_runtime_context().get_node_id()
    for node in ember.nodes():
        if node["NodeID"] == node_id:
            return f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    raise AssertionError("this node is not in ember.nodes()")


class Worker:
    """A Go or Rust worker process serving the node until stopped."""

    def __init__(self, binary: str, address: str, env: dict | None = None):
        env = dict(os.environ, EMBER_ADDRESS=address, **(env or {}))
        self.proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.errors: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.strip() == "ready":
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120):
            self.stop()
            raise AssertionError(f"{binary} never said ready: {''.join(self.errors)[-2000:]}")

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.errors.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture(scope="module")
def binaries(cluster):
    with tempfile.TemporaryDirectory() as tmp:
        yield {"go": _go_worker_binary(tmp), "address": _node_address()}


@pytest.fixture(scope="module")
def go_worker(binaries):
    w = Worker(binaries["go"], binaries["address"])
    yield w
    w.stop()


@pytest.fixture(scope="module")
def rust_worker(binaries):
    w = Worker(_rust_worker_binary(), binaries["address"])
    yield w
    w.stop()


def test_python_calls_go_functions(go_worker):
    add, echo = cross_language.go_function("go.add"), cross_language.go_function("go.echo")
    assert ember.get(add.remote(2, 40), timeout=60) == 42
    value = {"name": "ember", "sizes": [1, 2.5, None, True], "raw": b"\x00\xff", "nested": {"a": [[]]}}
    assert ember.get(echo.remote(value), timeout=60) == value
    # A ref to a Go result goes to Go by value.
    assert ember.get(add.remote(add.remote(1, 1), 1), timeout=60) == 3
    with pytest.raises(CrossLanguageError, match="no stock left"):
        ember.get(cross_language.go_function("go.fail").remote("no stock left"), timeout=60)


def test_python_calls_rust_functions(rust_worker):
    assert ember.get(cross_language.rust_function("rust.add").remote(2, 40), timeout=60) == 42
    counts = ember.get(cross_language.rust_function("rust.word_count").remote("The cat the HAT"),
                       timeout=60)
    assert counts == {"the": 2, "cat": 1, "hat": 1}
    with pytest.raises(CrossLanguageError, match="bad input"):
        ember.get(cross_language.rust_function("rust.fail").remote("bad input"), timeout=60)


@pytest.mark.parametrize("language", ["go", "rust"])
def test_python_creates_and_calls_actors_of_other_languages(language, request):
    request.getfixturevalue(f"{language}_worker")
    if language == "go":
        cls, incr, get, fail = cross_language.go_actor_class("go.Counter"), "incr", "Get", "Fail"
    else:
        cls, incr, get, fail = cross_language.rust_actor_class("rust.Counter"), "incr", "get", "fail"
    counter = cls.remote(10)
    refs = [getattr(counter, incr).remote(1) for _ in range(100)]
    assert ember.get(refs, timeout=120) == list(range(11, 111)), "calls run in order"
    assert ember.get(getattr(counter, get).remote(), timeout=60) == 110
    with pytest.raises(CrossLanguageError, match="boom"):
        ember.get(getattr(counter, fail).remote("boom"), timeout=60)
    assert ember.get(getattr(counter, get).remote(), timeout=60) == 110, "an error keeps the actor"
    with pytest.raises(Exception, match="nosuchmethod"):
        ember.get(counter.nosuchmethod.remote(), timeout=60)
    # Named: found again by name (get_if_exists), then killed for good.
    named = cls.options(name=f"{language}-shared", get_if_exists=True).remote(0)
    ember.get(getattr(named, incr).remote(5), timeout=60)
    again = cls.options(name=f"{language}-shared", get_if_exists=True).remote(0)
    assert ember.get(getattr(again, get).remote(), timeout=60) == 5
    ember.kill(ember.get_actor(f"{language}-shared"))
    with pytest.raises(ActorDiedError):
        ember.get(getattr(named, get).remote(), timeout=60)


def test_a_class_nobody_serves_fails_its_calls_naming_it(cluster):
    ghost = cross_language.go_actor_class("go.Nobody").remote()
    with pytest.raises(ActorDiedError, match="go.Nobody"):
        ember.get(ghost.Get.remote(), timeout=60)


def test_a_go_actor_restarts_on_another_worker_when_its_process_is_killed(binaries, go_worker):
    second = Worker(binaries["go"], binaries["address"])
    try:
        counter = cross_language.go_actor_class("go.Counter").options(
            max_restarts=1, max_task_retries=1).remote(100)
        assert ember.get(counter.Incr.remote(1), timeout=60) == 101
        host = ember.get(counter.Pid.remote(), timeout=60)
        victim = {go_worker.pid: go_worker, second.pid: second}[host]
        survivor = second if victim is go_worker else go_worker
        victim.kill()
        # Rebuilt by its constructor on the survivor: the state starts again.
        assert ember.get(counter.Incr.remote(1), timeout=120) == 101
        assert ember.get(counter.Pid.remote(), timeout=60) == survivor.pid
        # Out of restarts: the next loss is final.
        survivor.kill()
        with pytest.raises(ActorDiedError):
            ember.get(counter.Get.remote(), timeout=120)
    finally:
        second.stop()


def test_go_functions_and_actors_served_on_another_node_are_reached_from_this_one(tmp_path):
    from ember_test_support import NodeProcess, run_driver

    root = str(tmp_path)
    beats = {"EMBER_HEARTBEAT_MS": "200", "EMBER_NODE_DEATH_BEATS": "5"}
    head = NodeProcess(["--head", "--num-cpus", "1"], root, beats)
    second = worker = None
    try:
        second = NodeProcess(["--address", head.address, "--node-ip", "127.0.0.2", "--num-cpus", "1"],
                             root, beats)
        with tempfile.TemporaryDirectory() as tmp:
            worker = Worker(_go_worker_binary(tmp), second.address, {"EMBER_TMPDIR": root})
            # A driver on the head: the names reach it with the heartbeats.
            out = run_driver(f"""
                import time
                import ember
                from ember import cross_language
                ember.init(address="{head.address}")
                add = cross_language.go_function("go.add")
                deadline = time.time() + 30
                while True:
                    try:
                        print("ADD", ember.get(add.remote(20, 22), timeout=30))
                        break
                    except ember.exceptions.RayError as e:
                        if "unknown function" not in str(e) or time.time() > deadline:
                            raise
                        time.sleep(0.2)
                counter = cross_language.go_actor_class("go.Counter").remote(1)
                print("COUNT", ember.get([counter.Incr.remote(1) for _ in range(3)], timeout=60))
                print("PID", ember.get(counter.Pid.remote(), timeout=60))
                ember.shutdown()
                """, env={"EMBER_TMPDIR": root}, timeout=120)
            assert "ADD 42" in out.stdout, out.stdout + out.stderr
            assert "COUNT [2, 3, 4]" in out.stdout, out.stdout + out.stderr
            assert f"PID {worker.pid}" in out.stdout, out.stdout + out.stderr
    finally:
        if worker is not None:
            worker.stop()
        for node in (second, head):
            if node is not None:
                node.stop()
