import gc
import pickle

import numpy as np
import pytest

import ember
from ember import exceptions
from ember._private import serialization
from ember._private.runtime import CoreRuntime
from ember.v1 import common_pb2, local_pb2


def inline_value(obj):
    ser = serialization.serialize(obj)
    return common_pb2.ObjectValue(format=ser.format, metadata=ser.metadata, inline_data=ser.to_bytes())


@ember.remote
def add(a, b=0):
    return a + b


def test_hello(runtime, fake_node):
    hello = fake_node.ops_of("hello")[0]
    assert hello.token == "secret" and hello.kind == local_pb2.DRIVER and hello.language == common_pb2.PYTHON
    assert runtime.node_id == b"N" * 16 and runtime.max_inline_bytes == 100 * 1024


def test_wrong_token_raises_authentication_error(fake_node):
    with pytest.raises(exceptions.AuthenticationError, match="wrong token"):
        CoreRuntime(fake_node.path, "nope")


def test_submit_and_get(runtime, fake_node):
    fake_node.auto_results = lambda spec: inline_value(42)
    ref = add.remote(1, b=2)
    assert isinstance(ref, ember.ObjectRef)
    assert ember.get(ref) == 42
    assert ember.get([ref, ref]) == [42, 42]
    reg = fake_node.ops_of("register_function")
    assert len(reg) == 1 and reg[0].payload
    spec = fake_node.ops_of("submit_task")[0].spec
    assert spec.task_id == ref.task_id() and spec.resources == {"CPU": 1.0} and spec.max_retries == 3
    assert spec.function.function_id == reg[0].function.function_id
    assert [a.keyword for a in spec.args] == ["", "b"]
    assert pickle.loads(spec.args[0].value.inline_data) == 1
    add.remote(3)
    fake_node.ops_of("submit_task", 2)
    assert len(fake_node.ops_of("register_function")) == 1  # registered once


def test_ref_args_and_options(runtime, fake_node):
    fake_node.auto_results = lambda spec: inline_value(None)
    r = ember.put(5)
    r2 = add.options(num_cpus=0, num_gpus=1, resources={"tpu": 2}, num_returns=2, max_retries=-1,
                     retry_exceptions=[ValueError]).remote(r)
    assert isinstance(r2, list) and len(r2) == 2
    spec = fake_node.ops_of("submit_task")[-1].spec
    assert spec.args[0].object_ref == r.binary()
    assert dict(spec.resources) == {"GPU": 1.0, "tpu": 2.0}
    assert spec.retry_exceptions and list(spec.retry_exception_allowlist) == ["ValueError"]
    assert add.options(num_returns=0).remote() is None
    with pytest.raises(ValueError):
        add.options(num_cpus=-1)
    with pytest.raises(ValueError):
        add.options(bogus=1)


def test_large_argument_is_put_and_passed_by_reference(runtime, fake_node):
    fake_node.auto_results = lambda spec: inline_value(0)
    big = np.zeros(200_000, dtype=np.uint8)
    add.remote(big)
    spec = fake_node.ops_of("submit_task")[-1].spec
    oid = spec.args[0].object_ref
    assert oid and oid.endswith(b"\0\0\0\0")
    assert fake_node.ops_of("put_object")[-1].object_id == oid
    runtime.flush()
    fake_node.wait_for(lambda ops: any(op.WhichOneof("op") == "ref_update" and oid in op.ref_update.remove
                                       for op in ops))
    # The remove follows the submit that holds the argument.
    kinds = [(op.WhichOneof("op"), op) for op in fake_node.ops]
    submit_pos = max(i for i, (k, _) in enumerate(kinds) if k == "submit_task")
    remove_pos = min(i for i, (k, op) in enumerate(kinds) if k == "ref_update" and oid in op.ref_update.remove)
    assert remove_pos > submit_pos


def test_get_raises_remote_exception(runtime, fake_node):
    err = common_pb2.TaskError(kind=common_pb2.TASK_FAILED, type_name="ValueError", message="boom",
                               traceback="Traceback (most recent call last):\nValueError: boom",
                               language=common_pb2.PYTHON, payload=pickle.dumps(ValueError("boom")))
    fake_node.auto_results = lambda spec: common_pb2.ObjectValue(format=common_pb2.ERROR,
                                                                 inline_data=err.SerializeToString())
    ref = add.remote(1)
    with pytest.raises(ValueError, match="boom") as info:
        ember.get(ref)
    assert isinstance(info.value, exceptions.RayTaskError)


def test_get_timeout_and_wait(runtime, fake_node):
    ref = add.remote(1)  # no auto result: stays pending
    with pytest.raises(exceptions.GetTimeoutError):
        ember.get(ref, timeout=0.05)
    with pytest.raises(TimeoutError):
        ember.get(ref, timeout=0)
    done = ember.put("x")
    ready, not_ready = ember.wait([ref, done], num_returns=1, timeout=0.05)
    assert ready == [done] and not_ready == [ref]
    ready, not_ready = ember.wait([ref, done], num_returns=2, timeout=0.05)
    assert ready == [done] and not_ready == [ref]
    with pytest.raises(ValueError):
        ember.wait([done, done])
    with pytest.raises(ValueError):
        ember.wait([done], num_returns=2)
    oid = ref.binary()
    fake_node.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(object_id=oid, value=inline_value(7))))
    assert ember.wait([ref, done], num_returns=2, timeout=5) == ([ref, done], [])
    assert ember.get(ref) == 7


def test_put_refs_and_release(runtime, fake_node):
    with pytest.raises(TypeError):
        ember.put(ember.put(1))
    r = ember.put({"k": 1})
    assert ember.get(r) == {"k": 1}
    oid = r.binary()
    outer = ember.put([r])
    # put(1), put({"k": 1}), put([r]): wait for all three (the refused put sent its inner one)
    assert list(fake_node.ops_of("put_object", 3)[-1].value.contained_refs) == [oid]
    del r, outer
    gc.collect()
    runtime.flush()
    fake_node.wait_for(lambda ops: any(op.WhichOneof("op") == "ref_update" and oid in op.ref_update.remove
                                       for op in ops))
    assert oid not in runtime.objects


def test_borrowed_ref_adds_and_gets(runtime, fake_node):
    oid = b"z" * 20
    ref = pickle.loads(pickle.dumps(ember.ObjectRef(oid)))
    gc.collect()
    runtime.flush()
    fake_node.wait_for(lambda ops: any(op.WhichOneof("op") == "ref_update" and oid in op.ref_update.add
                                       for op in ops))
    fake_node.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(object_id=oid, value=inline_value("v"))))
    assert ember.get(ref, timeout=5) == "v"
    assert oid in fake_node.ops_of("get_objects")[-1].object_ids


def test_large_put_uses_shm_and_array_keeps_object_alive(runtime, fake_node):
    a = np.arange(100_000, dtype=np.float64)  # 800 kB: shared memory
    ref = ember.put(a)
    create = fake_node.ops_of("create_object")[0]
    assert create.object_id == ref.binary() and create.size > a.nbytes
    put = fake_node.ops_of("put_object")[-1]
    assert put.value.WhichOneof("body") == "shm"
    out = ember.get(ref)
    # The location came as a grant the runtime asked for, not from its own put.
    assert any(g.map and ref.binary() in g.object_ids for g in fake_node.ops_of("get_objects"))
    np.testing.assert_array_equal(out, a)
    assert not out.flags.writeable
    oid = ref.binary()
    del ref
    gc.collect()
    runtime.flush()
    fake_node.wait_for(lambda ops: any(op.WhichOneof("op") == "ref_update" and oid in op.ref_update.remove
                                       for op in ops))

    def unmapped(ops):
        return any(op.WhichOneof("op") == "ref_update" and oid in op.ref_update.unmap for op in ops)

    assert not unmapped(fake_node.ops)  # the array still points into the mapping: its grant is held
    assert float(out.sum()) == float(a.sum())
    del out
    gc.collect()
    runtime.flush()
    fake_node.wait_for(unmapped)


def test_cancel_and_cluster_info(runtime, fake_node):
    ref = add.remote(1)
    ember.cancel(ref, force=True)
    fake_node.wait_for(lambda ops: any(op.WhichOneof("op") == "cancel_task" for op in ops))
    c = fake_node.ops_of("cancel_task")[0]
    assert c.task_id == ref.task_id() and c.force and c.recursive
    assert ember.cluster_resources()["CPU"] == 4.0
    assert ember.available_resources()["CPU"] == 3.0
    nodes = ember.nodes()
    assert nodes[0]["Alive"] and nodes[0]["NodeManagerPort"] == 1234 and nodes[0]["NodeID"] == "4e" * 16
    ctx = ember.get_runtime_context()
    assert ctx.get_task_id() is None and ctx.get_node_id() == "4e" * 16 and ctx.get_job_id() == "01000000"
    assert ember.get_gpu_ids() == []


def test_future(runtime, fake_node):
    ref = add.remote(1)
    fut = ref.future()
    assert not fut.done()
    fake_node.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(object_id=ref.binary(),
                                                                      value=inline_value(9))))
    assert fut.result(timeout=5) == 9


def test_init_twice_raises(runtime):
    with pytest.raises(RuntimeError, match="twice"):
        ember.init()
    assert ember.is_initialized()


def test_warning_logged_once(runtime, fake_node, caplog):
    fake_node.push(local_pb2.NodeOp(warning=local_pb2.Warning(message="infeasible task")),
                   local_pb2.NodeOp(warning=local_pb2.Warning(message="infeasible task")))
    runtime.conn.wait_until(lambda: "infeasible task" in runtime._warned, timeout=5)
    assert sum("infeasible task" in r.message for r in caplog.records) == 1
