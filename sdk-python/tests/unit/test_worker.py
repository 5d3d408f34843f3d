import threading

import cloudpickle
import pytest

from ember import exceptions
from ember._private import serialization, state
from ember._private.runtime import CoreRuntime
from ember._private.worker_main import Worker
from ember.v1 import common_pb2, local_pb2


def make_task(fn, args=(), num_returns=1, retry=False, allow=(), task_id=b"T" * 16, send_code=True):
    payload = cloudpickle.dumps(fn)
    spec = common_pb2.TaskSpec(
        task_id=task_id, job_id=b"\1\0\0\0",
        function=common_pb2.FunctionDescriptor(language=common_pb2.PYTHON, function_id=b"F" * 19 + bytes([len(payload) % 256]),
                                               name="test.fn"),
        num_returns=num_returns, retry_exceptions=retry, retry_exception_allowlist=list(allow))
    for a in args:
        ser = serialization.serialize(a)
        spec.args.add(value=common_pb2.ObjectValue(format=ser.format, metadata=ser.metadata,
                                                   inline_data=ser.to_bytes()))
    return local_pb2.ExecuteTask(spec=spec, function_payload=payload if send_code else b"",
                                 gpu_ids=["3"], code_search_path=["/nonexistent/path"])


@pytest.fixture
def worker(fake_node):
    rt = CoreRuntime(fake_node.path, "secret", is_worker=True, worker_id=b"W" * 16)
    state.runtime = rt
    yield Worker(rt), rt
    state.runtime = None
    rt.shutdown()


def finished(fake_node, n=1):
    return fake_node.ops_of("task_finished", n)


def decode(value):
    data = value.inline_data
    return serialization.deserialize(value.format, value.metadata, data)


def test_worker_runs_task(worker, fake_node):
    w, rt = worker
    assert fake_node.ops_of("hello")[0].kind == local_pb2.WORKER

    def fn(a, b):
        import os
        return a + b, os.environ.get("CUDA_VISIBLE_DEVICES")

    w.execute(make_task(fn, (2, 3)))
    rt.flush()
    fin = finished(fake_node)[0]
    assert fin.task_id == b"T" * 16
    assert decode(fin.returns[0]) == (5, "3")
    import sys
    assert "/nonexistent/path" in sys.path


def test_worker_reports_exception(worker, fake_node):
    w, rt = worker

    def fn():
        raise KeyError("nope")

    w.execute(make_task(fn, retry=True, allow=["LookupError"], num_returns=2))
    rt.flush()
    fin = finished(fake_node)[0]
    assert fin.retryable_error and len(fin.returns) == 2
    assert fin.returns[0].format == common_pb2.ERROR
    err = common_pb2.TaskError.FromString(fin.returns[0].inline_data)
    assert err.kind == common_pb2.TASK_FAILED and err.type_name == "KeyError" and "in fn" in err.traceback
    with pytest.raises(KeyError):
        decode(fin.returns[0])


def test_worker_num_returns_mismatch_and_load_failure(worker, fake_node):
    w, rt = worker
    w.execute(make_task(lambda: (1, 2, 3), num_returns=2))
    w.execute(make_task(lambda: 1, task_id=b"U" * 16, send_code=False))
    rt.flush()
    a, b = finished(fake_node, 2)
    assert "num_returns=2" in common_pb2.TaskError.FromString(a.returns[0].inline_data).message
    err = common_pb2.TaskError.FromString(b.returns[0].inline_data)
    assert err.kind == common_pb2.FUNCTION_LOAD_FAILED
    with pytest.raises(exceptions.RaySystemError):
        decode(b.returns[0])


def plain_task(task, task_id):
    """The same task again, as the node sends a loaded function's later tasks: no code, and no GPUs
    or code paths (the fast path's case)."""
    again = local_pb2.ExecuteTask()
    again.CopyFrom(task)
    again.spec.task_id = task_id
    again.function_payload = b""
    del again.gpu_ids[:]
    del again.code_search_path[:]
    return again


@pytest.mark.parametrize("result", [None, 7, 2.5, "short", [1, {"a": (2, 3)}], b"x" * 300_000])
def test_a_loaded_function_without_arguments_gives_what_the_general_path_gives(worker, fake_node, monkeypatch,
                                                                               result):
    w, rt = worker
    rt.max_inline_bytes = 100_000  # the bytes go to shared memory
    first = make_task(lambda: result)
    w.execute(first)  # loads the function (general path)
    calls = []
    general = w._call
    monkeypatch.setattr(w, "_call", lambda *a: calls.append(a) or general(*a))
    w.execute(plain_task(first, b"V" * 16))
    rt.flush()
    a, b = finished(fake_node, 2)
    assert calls == [], "a loaded function without arguments takes the fast path"
    assert b.task_id == b"V" * 16 and not b.retryable_error and len(b.returns) == 1
    if b.returns[0].WhichOneof("body") == "shm":
        assert a.returns[0].WhichOneof("body") == "shm" and b.returns[0].shm.size == a.returns[0].shm.size
        return
    assert b.returns[0] == a.returns[0]
    assert decode(b.returns[0]) == result


def test_errors_and_cancellation_on_the_fast_path(worker, fake_node, monkeypatch):
    w, rt = worker

    def fn():
        import os
        kind = os.environ["EMBER_TEST_RAISE"]  # the function is pickled by value: no closure to change
        raise {"KeyError": KeyError("nope"), "ValueError": ValueError("not retried"),
               "KeyboardInterrupt": KeyboardInterrupt()}[kind]

    first = make_task(fn, retry=True, allow=["LookupError"])
    monkeypatch.setenv("EMBER_TEST_RAISE", "KeyError")
    w.execute(first)
    monkeypatch.setattr(w, "_call", None)  # the fast path must not need it
    w.execute(plain_task(first, b"V" * 16))
    monkeypatch.setenv("EMBER_TEST_RAISE", "ValueError")
    w.execute(plain_task(first, b"W" * 16))
    monkeypatch.setenv("EMBER_TEST_RAISE", "KeyboardInterrupt")
    w.execute(plain_task(first, b"X" * 16))
    rt.flush()
    general, fast_retry, fast_plain, cancelled = finished(fake_node, 4)
    assert general.retryable_error and fast_retry.retryable_error and not fast_plain.retryable_error
    errors = [common_pb2.TaskError.FromString(f.returns[0].inline_data)
              for f in (general, fast_retry, fast_plain, cancelled)]
    assert [e.type_name for e in errors[:3]] == ["KeyError", "KeyError", "ValueError"]
    assert "in fn" in errors[1].traceback and errors[1].kind == common_pb2.TASK_FAILED
    assert errors[3].kind == common_pb2.TASK_CANCELLED
    assert not w.running and rt.current_task is None


def test_a_task_cancelled_while_queued_is_answered_cancelled_and_never_runs(worker, fake_node, monkeypatch,
                                                                          tmp_path):
    import signal

    w, rt = worker
    monkeypatch.setenv("EMBER_SESSION_DIR", str(tmp_path))
    cancel_file = tmp_path / "cancel" / str(__import__("os").getpid())
    cancel_file.parent.mkdir()
    marker = tmp_path / "ran"

    def fn():
        import os
        open(os.environ["EMBER_TEST_MARKER"], "a").write("x")
        return 1

    monkeypatch.setenv("EMBER_TEST_MARKER", str(marker))
    running, queued, other = (make_task(fn, task_id=t * 16) for t in (b"R", b"Q", b"O"))
    # The node names the queued task (and, earlier, one already finished), then signals
    # while another task runs: nothing is interrupted ...
    cancel_file.write_text(("D" * 16).encode().hex() + "\n" + queued.spec.task_id.hex() + "\n")
    rt.current_task, w.running = running, True
    w._on_sigint(signal.SIGINT, None)
    rt.current_task, w.running = None, False
    # ... the queued task is answered cancelled without running, the next one runs.
    w.execute(queued)
    w.execute(other)
    rt.flush()
    cancelled, ran = finished(fake_node, 2)
    assert cancelled.task_id == b"Q" * 16
    assert common_pb2.TaskError.FromString(cancelled.returns[0].inline_data).kind == common_pb2.TASK_CANCELLED
    assert ran.task_id == b"O" * 16 and decode(ran.returns[0]) == 1
    assert marker.read_text() == "x"
    # A signal naming the running task interrupts it.
    rt.current_task, w.running = running, True
    cancel_file.write_text(cancel_file.read_text() + running.spec.task_id.hex() + "\n")
    with pytest.raises(KeyboardInterrupt):
        w._on_sigint(signal.SIGINT, None)
    rt.current_task, w.running = None, False


def test_worker_loop_batches_and_hands_back_when_blocked(worker, fake_node):
    w, rt = worker
    t = threading.Thread(target=w.run, daemon=True)

    def blocking():
        import ember
        ref = ember.ObjectRef(b"o" * 20)
        return ember.get(ref)

    fake_node.push(local_pb2.NodeOp(execute_task=make_task(blocking, task_id=b"A" * 16)),
                   local_pb2.NodeOp(execute_task=make_task(lambda: 1, task_id=b"B" * 16)))
    t.start()
    blocked = fake_node.ops_of("worker_blocked")[0]
    assert list(blocked.returned_task_ids) == [b"B" * 16]
    # A task arriving while blocked is handed back too.
    fake_node.push(local_pb2.NodeOp(execute_task=make_task(lambda: 2, task_id=b"C" * 16)))
    assert list(fake_node.ops_of("worker_blocked", 2)[1].returned_task_ids) == [b"C" * 16]
    ser = serialization.serialize("value")
    fake_node.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(
        object_id=b"o" * 20, value=common_pb2.ObjectValue(format=ser.format, inline_data=ser.to_bytes()))))
    fin = finished(fake_node)[0]
    assert fin.task_id == b"A" * 16 and decode(fin.returns[0]) == "value"
    assert fake_node.ops_of("worker_unblocked")
    fake_node.close()
    t.join(5)
    assert not t.is_alive()


def run_parent(w, fake_node, parent) -> list[list[str]]:
    """Run ``parent`` as a task on the worker's loop (each child's result is 1; the parent must
    return 3); its messages to the node after the hello, as lists of op kinds."""
    ser = serialization.serialize(1)
    fake_node.auto_results = lambda spec: common_pb2.ObjectValue(format=ser.format, inline_data=ser.to_bytes())
    t = threading.Thread(target=w.run, daemon=True)
    fake_node.push(local_pb2.NodeOp(execute_task=make_task(parent, task_id=b"P" * 16)))
    t.start()
    fin = finished(fake_node)[0]
    assert fin.task_id == b"P" * 16 and decode(fin.returns[0]) == 3
    fake_node.ops_of("worker_unblocked")
    with fake_node.cond:
        messages = [m for m in fake_node.messages if m != ["hello"]]
    fake_node.close()
    t.join(5)
    assert not t.is_alive()
    return messages


def test_a_parent_that_blocks_again_before_its_unblock_went_out_sends_neither(worker, fake_node, monkeypatch):
    w, rt = worker
    # Held ops go out only with the next send here (the 1 ms flusher would make this timing-bound).
    monkeypatch.setattr(rt.conn._held_timer, "arm", lambda: None)

    def parent():
        import ember

        child = ember.remote(lambda: 1)
        first = ember.get(child.remote())
        return first + sum(ember.get([child.remote() for _ in range(2)]))

    messages = [[k for k in m if k != "ref_update"] for m in run_parent(w, fake_node, parent)]
    # The second get's children go out alone: the first get's WorkerUnblocked was still held,
    # so to the node the worker stayed blocked (its CPU lent) throughout.
    assert messages == [["worker_blocked", "register_function", "submit_task"],
                        ["submit_task", "submit_task"],
                        ["task_finished", "worker_unblocked"]], messages


def test_a_parent_sends_its_children_with_worker_blocked_and_its_result_with_worker_unblocked(worker, fake_node):
    w, rt = worker

    def parent():
        import ember

        child = ember.remote(lambda: 1)
        return sum(ember.get([child.remote() for _ in range(3)]))

    messages = run_parent(w, fake_node, parent)
    # One message: WorkerBlocked, then the function's registration and the three submissions
    # (none of it went out before the get; the node lends the parent's CPU before it places
    # the children) ...
    assert messages[0] == ["worker_blocked", "register_function"] + ["submit_task"] * 3, messages
    # ... and one with the result and WorkerUnblocked (and the children's refs released).
    assert [k for k in messages[-1] if k != "ref_update"] == ["task_finished", "worker_unblocked"], messages
    assert len(messages) == 2, messages
