"""Failures: worker crashes and retries, cancellation, infeasible work,
bad input, the cluster token. The daemon must report each clearly and keep
serving."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time

import ember
import numpy as np
import pytest
from ember import exceptions
from ember.v1 import common_pb2, local_pb2
from ember_test_support import EMBER_BIN, run_driver, wait_for


def _runtime():
    from ember._private import state

    return state.runtime


def _session():
    """The session JSON of the cluster this process is connected to."""
    import glob

    address = (
        ember.get_runtime_context().gcs_address
        if hasattr(ember.get_runtime_context(), "gcs_address")
        else None
    )
    root = os.environ["EMBER_TMPDIR"]
    sessions = []
    for path in glob.glob(os.path.join(root, "session_*", "session.json")):
        with open(path) as f:
            sessions.append(json.load(f))
    node_id = ember.get_runtime_context().get_node_id()
    for info in sessions:
        if info["node_id"] == node_id or info["address"] == address:
            return info
    raise AssertionError(f"no session file for node {node_id} in {root}")


def test_worker_killed_mid_task_is_retried(cluster, tmp_path):
    marker = tmp_path / "attempts"

    @ember.remote(max_retries=2)
    def crash_once(path):
        with open(path, "a") as f:
            f.write("x")
        if os.path.getsize(path) == 1:
            os._exit(1)
        return "survived"

    assert ember.get(crash_once.remote(str(marker)), timeout=60) == "survived"
    assert marker.read_text() == "xx"


def test_worker_crash_without_retries_raises(cluster):
    @ember.remote(max_retries=0)
    def crash():
        os._exit(3)

    with pytest.raises(exceptions.WorkerCrashedError, match="died"):
        ember.get(crash.remote(), timeout=60)
    # The node still serves.
    assert ember.get(ember.put(5)) == 5


def test_retry_exceptions(cluster, tmp_path):
    marker = tmp_path / "tries"

    @ember.remote(retry_exceptions=True, max_retries=3)
    def flaky(path):
        with open(path, "a") as f:
            f.write("x")
        if os.path.getsize(path) < 3:
            raise RuntimeError("not yet")
        return os.path.getsize(path)

    assert ember.get(flaky.remote(str(marker)), timeout=60) == 3

    marker2 = tmp_path / "no-retry"

    @ember.remote(max_retries=3)
    def fails_once(path):
        with open(path, "a") as f:
            f.write("x")
        raise RuntimeError("application error")

    with pytest.raises(RuntimeError):
        ember.get(fails_once.remote(str(marker2)), timeout=60)
    assert marker2.read_text() == "x", (
        "exceptions are not retried without retry_exceptions"
    )


def test_retry_exceptions_allowlist(cluster, tmp_path):
    marker = tmp_path / "allow"

    @ember.remote(retry_exceptions=[KeyError], max_retries=3)
    def picky(path):
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("not in the allowlist")

    with pytest.raises(ValueError):
        ember.get(picky.remote(str(marker)), timeout=60)
    assert marker.read_text() == "x"


def test_cancel_pending_task(cluster):
    @ember.remote(resources={"special": 1})
    def hold(t):
        time.sleep(t)
        return "done"

    running = hold.remote(2)
    pending = hold.remote(0)  # waits for `special`
    time.sleep(0.2)
    ember.cancel(pending)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(pending, timeout=30)
    assert ember.get(running, timeout=30) == "done"


def test_cancel_running_task(cluster):
    @ember.remote(max_retries=0)
    def forever():
        while True:
            time.sleep(0.05)

    ref = forever.remote()
    time.sleep(0.5)
    ember.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(ref, timeout=30)

    ref = forever.remote()
    time.sleep(0.5)
    ember.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(ref, timeout=30)
    # Workers keep working afterwards.
    assert ember.get(ember.remote(lambda: 7).remote(), timeout=30) == 7


def test_a_task_cancelled_while_queued_on_a_worker_never_runs(cluster, tmp_path):
    # Both CPUs busy: the third task is queued behind one of them on its
    # worker (pipelined). Cancelled there, it must not run (Ray: a pending
    # task is not executed), not merely have its result dropped.
    marker = tmp_path / "ran"

    @ember.remote(max_retries=0)
    def hold(t):
        time.sleep(t)
        return t

    @ember.remote(max_retries=0)
    def mark(path):
        with open(path, "a") as f:
            f.write("x")
        return "ran"

    assert ember.get([hold.remote(0), mark.remote(str(tmp_path / "warm"))], timeout=60)
    holds = [hold.remote(2), hold.remote(2)]
    queued = mark.remote(str(marker))
    time.sleep(0.3)
    ember.cancel(queued)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(queued, timeout=30)
    assert ember.get(holds, timeout=30) == [2, 2]
    time.sleep(0.5)
    assert not marker.exists(), "a task cancelled before it started ran anyway"
    assert ember.get(mark.remote(str(marker)), timeout=30) == "ran"


def test_recursive_cancel_reaches_children_submitted_without_arguments(cluster, tmp_path):
    # Children without arguments are encoded from a cached head (the no-argument
    # path); they must still name their parent, or a recursive cancel misses them.
    started, finished = tmp_path / "started", tmp_path / "finished"

    @ember.remote(max_retries=0)
    def child():
        with open(started, "a") as f:
            f.write("x")
        time.sleep(3)
        with open(finished, "a") as f:
            f.write("x")

    @ember.remote(max_retries=0)
    def parent():
        ember.get(child.remote())  # the first call registers the function
        return ember.get([child.remote() for _ in range(2)])

    def count(path):
        return len(path.read_text()) if path.exists() else 0

    ref = parent.remote()
    deadline = time.time() + 60
    # The first child has finished and the other two have started.
    while (count(finished) < 1 or count(started) < 3) and time.time() < deadline:
        time.sleep(0.05)
    assert count(finished) == 1 and count(started) == 3
    ember.cancel(ref, recursive=True)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(ref, timeout=30)
    time.sleep(4)
    assert count(finished) == 1, "a child outlived its parent's recursive cancel"
    assert ember.get(ember.remote(lambda: 7).remote(), timeout=30) == 7


def _journal(**options):
    """An actor that records which of its calls ran, in its own state."""

    @ember.remote
    class Journal:
        def __init__(self):
            self.ran = []

        def hold(self, name, t, started=None):
            if started:
                open(started, "w").close()
            time.sleep(t)
            self.ran.append(name)
            return name

        def ran_calls(self):
            return list(self.ran)

    journal = Journal.options(**options).remote()
    assert ember.get(journal.ran_calls.remote(), timeout=60) == []
    return journal


def _wait_for_file(path):
    wait_for(lambda: os.path.exists(path), what=f"{path} to appear")


def test_an_actor_call_cancelled_before_it_starts_never_runs(cluster, tmp_path):
    # Ray: an actor task pending execution is cancelled and not executed; a
    # running one of a regular actor is not interrupted. Calls go to the
    # actor's process as soon as they are submitted, so the second call waits
    # there, behind the first.
    journal = _journal()
    started = str(tmp_path / "started")
    running = journal.hold.remote("running", 1.5, started)
    queued = journal.hold.remote("queued", 0)
    _wait_for_file(started)
    time.sleep(0.1)  # the queued call reaches the actor's process
    ember.cancel(queued)
    ember.cancel(running)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(queued, timeout=30)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(running, timeout=30)
    # The running call was not interrupted (it finished and recorded itself);
    # the queued one never ran; the actor goes on.
    assert ember.get(journal.ran_calls.remote(), timeout=30) == ["running"]
    assert ember.get(journal.hold.remote("after", 0), timeout=30) == "after"


def test_a_threaded_actor_call_cancelled_while_queued_never_runs(cluster, tmp_path):
    journal = _journal(max_concurrency=2)
    busy = [journal.hold.remote(f"busy{i}", 1.5, str(tmp_path / f"busy{i}")) for i in range(2)]
    queued = journal.hold.remote("queued", 0)
    for i in range(2):
        _wait_for_file(str(tmp_path / f"busy{i}"))
    ember.cancel(queued)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(queued, timeout=30)
    assert sorted(ember.get(busy, timeout=30)) == ["busy0", "busy1"]
    assert sorted(ember.get(journal.ran_calls.remote(), timeout=30)) == ["busy0", "busy1"]


def test_cancel_of_an_async_actor_call_cancels_its_coroutine(cluster, tmp_path):
    import asyncio

    @ember.remote
    class Waiter:
        def __init__(self):
            self.seen = []

        async def wait(self, name, t, started=None):
            if started:
                os.close(os.open(started, os.O_CREAT | os.O_WRONLY))
            try:
                await asyncio.sleep(t)
            except asyncio.CancelledError:
                self.seen.append(f"{name} cancelled")
                raise
            self.seen.append(f"{name} done")
            return name

        async def seen_calls(self):
            return list(self.seen)

    waiter = Waiter.remote()
    assert ember.get(waiter.seen_calls.remote(), timeout=60) == []
    long = waiter.wait.remote("long", 60, str(tmp_path / "long"))
    short = waiter.wait.remote("short", 1)
    _wait_for_file(str(tmp_path / "long"))
    start = time.monotonic()
    ember.cancel(long)
    with pytest.raises(exceptions.TaskCancelledError):
        ember.get(long, timeout=30)
    assert time.monotonic() - start < 20, "the cancelled coroutine ran on"
    assert ember.get(short, timeout=30) == "short"
    assert sorted(ember.get(waiter.seen_calls.remote(), timeout=30)) == ["long cancelled",
                                                                         "short done"]


def test_infeasible_task_stays_pending_and_is_reported(cluster):
    @ember.remote(resources={"tpu": 4})
    def impossible():
        return 1

    ref = impossible.remote()
    ready, pending = ember.wait([ref], timeout=0.5)
    assert ready == [] and pending == [ref]
    out = subprocess.run(
        check=False,
        args=[EMBER_BIN, "status", "--address", _session()["address"]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "infeasible" in out.stdout.lower()
    assert "tpu: 4" in out.stdout, out.stdout
    ember.cancel(ref)


def test_zero_copy_100mb_numpy(cluster):
    arr = np.random.default_rng(0).random(100 * 1024 * 1024 // 8)
    ref = ember.put(arr)
    got = ember.get(ref)
    np.testing.assert_array_equal(got, arr)
    assert not got.flags.writeable
    addr = got.__array_interface__["data"][0]
    shm_path = _session()["shm_path"]
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f if shm_path in line]
    assert any(
        int(r[0].split("-")[0], 16) <= addr < int(r[0].split("-")[1], 16)
        for r in regions
    ), "the array's buffer does not lie in the shared-memory arena"

    @ember.remote
    def total(a):
        assert not a.flags.writeable
        return float(a.sum())

    assert total.remote(ref) is not None
    assert abs(ember.get(total.remote(ref)) - float(arr.sum())) < 1e-6


def test_put_larger_than_store_is_a_clear_error(cluster):
    store = _session()
    del store
    # The fixture's store is the default size; ask for more than this machine's RAM.
    ok = run_driver(
        """
        import numpy as np, ember
        from ember import exceptions
        ember.init(num_cpus=1, object_store_memory=64 * 1024 * 1024)
        try:
            ember.put(np.zeros(100 * 1024 * 1024 // 8))
        except exceptions.ObjectStoreFullError as e:
            print("FULL", e)
        print("AFTER", ember.get(ember.put(np.ones(1000))).sum())
        ember.shutdown()
        """
    )
    assert "FULL" in ok.stdout, ok.stdout + ok.stderr
    assert "capacity" in ok.stdout
    assert "AFTER 1000.0" in ok.stdout


def _raw_connect(token):
    info = _session()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(info["socket"])
    hello = local_pb2.ClientMessage(
        ops=[
            local_pb2.ClientOp(
                hello=local_pb2.Hello(
                    token=token, kind=local_pb2.DRIVER, pid=os.getpid()
                )
            )
        ]
    )
    _send(sock, hello)
    return sock


def _send(sock, msg):
    body = msg.SerializeToString()
    sock.sendall(struct.pack("<I", len(body)) + body)


def _recv(sock, timeout=10):
    sock.settimeout(timeout)
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack("<I", head)
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return local_pb2.NodeMessage.FromString(body)


def _recv_op(sock, kind):
    while True:
        msg = _recv(sock)
        assert msg is not None, f"connection closed before {kind}"
        for op in msg.ops:
            if op.WhichOneof("op") == kind:
                return getattr(op, kind)


def test_local_connection_without_token_is_refused(cluster):
    sock = _raw_connect("wrong-token")
    err = _recv_op(sock, "error")
    assert err.error.kind == common_pb2.UNAUTHENTICATED
    assert "token" in err.error.message
    assert _recv(sock) is None  # closed
    assert ember.get(ember.put(1)) == 1


def test_grpc_call_without_token_is_refused(cluster):
    env = dict(os.environ, EMBER_TOKEN="not-the-token")
    out = subprocess.run(
        check=False,
        args=[EMBER_BIN, "status", "--address", _session()["address"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert out.returncode != 0
    assert "token" in out.stderr.lower(), out.stderr


def test_unknown_function_and_malformed_spec(cluster):
    sock = _raw_connect(_session()["token"])
    _recv_op(sock, "hello_reply")
    task_id = os.urandom(16)
    spec = common_pb2.TaskSpec(
        task_id=task_id,
        function=common_pb2.FunctionDescriptor(
            language=common_pb2.PYTHON, function_id=b"\x01" * 20, name="nope"
        ),
        num_returns=1,
        resources={"CPU": 1},
    )
    get = local_pb2.GetObjects(object_ids=[task_id + struct.pack("<I", 1)])
    _send(
        sock,
        local_pb2.ClientMessage(
            ops=[
                local_pb2.ClientOp(submit_task=local_pb2.SubmitTask(spec=spec)),
                local_pb2.ClientOp(get_objects=get),
            ]
        ),
    )
    ready = _recv_op(sock, "object_ready")
    assert ready.value.format == common_pb2.ERROR
    err = common_pb2.TaskError.FromString(ready.value.inline_data)
    assert err.kind == common_pb2.UNKNOWN_FUNCTION and "unknown function" in err.message

    bad_id = os.urandom(16)
    bad = common_pb2.TaskSpec(
        task_id=bad_id,
        function=common_pb2.FunctionDescriptor(
            language=common_pb2.PYTHON, function_id=b"\x01" * 20
        ),
        num_returns=1,
        args=[common_pb2.TaskArg(object_ref=b"short")],
        resources={"CPU": -1},
    )
    get = local_pb2.GetObjects(object_ids=[bad_id + struct.pack("<I", 1)])
    _send(
        sock,
        local_pb2.ClientMessage(
            ops=[
                local_pb2.ClientOp(submit_task=local_pb2.SubmitTask(spec=bad)),
                local_pb2.ClientOp(get_objects=get),
            ]
        ),
    )
    ready = _recv_op(sock, "object_ready")
    err = common_pb2.TaskError.FromString(ready.value.inline_data)
    assert (
        err.kind == common_pb2.INVALID_ARGUMENT and "malformed task spec" in err.message
    )

    # Garbage bytes: the connection is closed with an error, the node lives on.
    sock.sendall(struct.pack("<I", 5) + b"\xff\xff\xff\xff\xff")
    err = _recv_op(sock, "error")
    assert "malformed" in err.error.message
    sock.close()
    assert ember.get(ember.put("still serving")) == "still serving"


def test_unknown_function_via_sdk_surfaces_as_exception(cluster):
    from ember._private.remote_function import RemoteFunction  # noqa: F401

    rt = _runtime()
    assert rt is not None
    # The SDK registers functions itself; the raw test above covers the node's answer.


def test_function_that_fails_to_import_in_the_worker(cluster, tmp_path):
    """The function's module exists only for the driver: loading it in the
    worker fails, and the caller gets the import error."""
    moddir = tmp_path / "driver_only"
    moddir.mkdir()
    (moddir / "driver_only_mod.py").write_text("def f():\n    return 1\n")
    import sys

    sys.path.insert(0, str(moddir))
    try:
        import driver_only_mod

        fn = ember.remote(max_retries=0)(driver_only_mod.f)
        # Still imported here (so it pickles by reference), gone from disk.
        (moddir / "driver_only_mod.py").unlink()
        import shutil

        shutil.rmtree(moddir / "__pycache__", ignore_errors=True)
        with pytest.raises(exceptions.RayError) as info:
            ember.get(fn.remote(), timeout=60)
        assert "driver_only_mod" in str(info.value)
    finally:
        sys.path.remove(str(moddir))
        sys.modules.pop("driver_only_mod", None)
    assert ember.get(ember.put(2)) == 2


def test_worker_that_dies_at_startup_is_a_clear_error(tmp_path):
    """Worker processes that die while starting (here: a sitecustomize that
    exits in every worker) fail the task with a clear error; the node keeps
    serving the driver."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nif os.environ.get('EMBER_NODE_SOCKET'):\n    os._exit(7)\n"
    )
    out = run_driver(
        """
        import ember
        from ember import exceptions
        ember.init(num_cpus=1)
        @ember.remote
        def f():
            return 1
        try:
            ember.get(f.remote(), timeout=60)
        except exceptions.RayError as e:
            print("ERROR", type(e).__name__, e)
        print("PUT", ember.get(ember.put(3)))
        ember.shutdown()
        """,
        env={
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(site), os.environ.get("PYTHONPATH")])
            )
        },
        timeout=120,
    )
    assert "ERROR" in out.stdout, out.stdout + out.stderr
    assert "worker" in out.stdout.lower()
    assert "PUT 3" in out.stdout


def test_large_binary_memoryview_is_zero_copy(cluster):
    data = os.urandom(8 << 20)
    got = ember.get(ember.put(memoryview(data)))
    assert isinstance(got, memoryview) and got.readonly
    assert got == data
    arr = np.frombuffer(got, dtype=np.uint8)
    addr = arr.__array_interface__["data"][0]
    shm_path = _session()["shm_path"]
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f if shm_path in line]
    assert any(
        int(r[0].split("-")[0], 16) <= addr < int(r[0].split("-")[1], 16)
        for r in regions
    )
    # bytes keep Ray's type: they come back as bytes.
    assert ember.get(ember.put(data)) == data


def test_killed_node_is_reported_and_leaves_no_workers():
    out = run_driver(
        """
        import os, signal, time
        import psutil
        import ember
        ember.init(num_cpus=2)

        @ember.remote
        def slow():
            time.sleep(60)

        ref = slow.remote()
        from ember._private import api
        node = psutil.Process(api._local_node.process.pid)
        deadline = time.time() + 30
        while len(node.children(recursive=True)) < 3 and time.time() < deadline:
            time.sleep(0.05)
        family = node.children(recursive=True)
        print("FAMILY", len(family))
        time.sleep(0.3)
        node.kill()
        start = time.time()
        try:
            ember.get(ref, timeout=30)
        except ember.exceptions.RayError as e:
            print("ERROR", type(e).__name__, round(time.time() - start, 1))
        gone, alive = psutil.wait_procs(family, timeout=10)
        print("ALIVE", len(alive))
        ember.shutdown()
        """,
        timeout=120,
    )
    assert "FAMILY 3" in out.stdout, out.stdout + out.stderr
    assert "ERROR LocalRayletDiedError" in out.stdout, out.stdout + out.stderr
    assert "ALIVE 0" in out.stdout, out.stdout + out.stderr
