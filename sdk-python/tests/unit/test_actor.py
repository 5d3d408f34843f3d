"""Actors against the fake node: what the SDK sends (CreateActor, calls, GetActor,
KillActor) and how a worker runs an actor (inline, threaded, async, exit)."""

import asyncio
import os
import pickle
import struct
import threading
import time

import cloudpickle
import pytest

import ember
from ember import exceptions
from ember._private import serialization, state, wire
from ember._private.actor import ActorHandle, actor_resources, validate_actor_options
from ember._private.runtime import CoreRuntime
from ember._private.worker_main import Worker
from ember.v1 import common_pb2, local_pb2


def inline_value(obj):
    ser = serialization.serialize(obj)
    return common_pb2.ObjectValue(format=ser.format, metadata=ser.metadata, inline_data=ser.to_bytes())


def decode(value):
    return serialization.deserialize(value.format, value.metadata, value.inline_data)


@ember.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, by=1):
        self.n += by
        return self.n

    @ember.method(num_returns=2)
    def pair(self):
        return self.n, -self.n

    @ember.method(concurrency_group="io")
    def io(self):
        return "io"

    def _private(self):
        return "p"


@ember.remote
class AsyncThing:
    async def work(self, x):
        await asyncio.sleep(0.01)
        return x


def test_wire_create_actor_and_actor_exit_parse():
    spec = common_pb2.TaskSpec(num_returns=1, actor_creation=common_pb2.ActorCreation(
        actor_id=b"a" * 16, name="n")).SerializeToString()
    op = local_pb2.ClientOp.FromString(wire.encode_create_actor(7, [spec, wire.spec_task_fields(b"t" * 16, None)]))
    assert op.create_actor.request_id == 7 and op.create_actor.spec.task_id == b"t" * 16
    assert op.create_actor.spec.actor_creation.name == "n"
    op = local_pb2.ClientOp.FromString(wire.encode_create_actor(0, [spec]))
    assert op.create_actor.request_id == 0 and op.create_actor.spec.actor_creation.actor_id == b"a" * 16
    op = local_pb2.ClientOp.FromString(wire.encode_task_finished(b"t" * 16, [], False, True))
    assert op.task_finished.actor_exit and not op.task_finished.retryable_error


def test_actor_options_and_resources():
    place, held = actor_resources(validate_actor_options({}))
    assert place == {"CPU": 1.0} and held == {}
    place, held = actor_resources(validate_actor_options({"num_cpus": 2, "num_gpus": 1,
                                                         "resources": {"special": 1}}))
    assert place == held == {"CPU": 2.0, "GPU": 1.0, "special": 1.0}
    place, held = actor_resources(validate_actor_options({"num_gpus": 1}))
    assert place == {"CPU": 1.0, "GPU": 1.0} and held == {"GPU": 1.0}
    place, held = actor_resources(validate_actor_options({"num_cpus": 0}))
    assert place == held == {}
    with pytest.raises(ValueError):
        validate_actor_options({"num_returns": 1})
    with pytest.raises(ValueError):
        validate_actor_options({"get_if_exists": True})
    with pytest.raises(ValueError):
        validate_actor_options({"lifetime": "forever"})
    with pytest.raises(ValueError):
        validate_actor_options({"max_concurrency": 0})
    with pytest.raises(ValueError):
        validate_actor_options({"name": ""})
    validate_actor_options({"scheduling_strategy": "SPREAD", "runtime_env": {}, "max_pending_calls": 3})


def test_class_cannot_be_instantiated_and_method_cannot_be_called():
    with pytest.raises(TypeError, match=r"Instead of 'Counter\(\)', use 'Counter.remote\(\)'"):
        Counter()
    h = ActorHandle(b"a" * 16, common_pb2.FunctionDescriptor(), "Counter", {"inc": (1, "")})
    with pytest.raises(TypeError, match="inc.remote"):
        h.inc()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        h.nope  # noqa: B018
    assert repr(h) == f"Actor(Counter, {'61' * 16})"
    assert h._actor_id.hex() == "61" * 16


def test_create_actor_and_call(runtime, fake_node):
    fake_node.auto_results = lambda spec: inline_value(spec.method_name)
    c = Counter.options(max_restarts=2, max_task_retries=-1, max_concurrency=3,
                        concurrency_groups={"io": 2}).remote(5, by=1)
    create = fake_node.ops_of("create_actor")[0]
    reg = fake_node.ops_of("register_function")[0]
    spec = create.spec
    assert create.request_id == 0
    assert spec.function.function_id == reg.function.function_id
    cr = spec.actor_creation
    assert cr.actor_id == c._ember_actor_id and cr.class_name == "Counter"
    assert cr.max_restarts == 2 and cr.max_task_retries == -1 and cr.max_concurrency == 3
    assert dict(cr.concurrency_groups) == {"io": 2} and not cr.is_async and not cr.detached
    assert dict(spec.resources) == {"CPU": 1.0} and dict(cr.held_resources) == {}
    methods = {m.name: (m.num_returns, m.concurrency_group) for m in cr.methods}
    assert methods["inc"] == (1, "") and methods["pair"] == (2, "") and methods["io"] == (1, "io")
    assert "_private" in methods and "__init__" not in methods
    assert [a.keyword for a in spec.args] == ["", "by"] and decode(spec.args[0].value) == 5
    # The creation's return is dropped at once.
    ret = spec.task_id + struct.pack("<I", 1)
    fake_node.wait_for(lambda ops: any(op.WhichOneof("op") == "ref_update" and ret in op.ref_update.remove
                                       for op in ops))

    assert ember.get(c.inc.remote(2)) == "inc"
    a, b = c.pair.remote()
    assert ember.get([a, b]) == ["pair", "pair"]
    assert ember.get(c.io.remote()) == "io"
    assert ember.get(c.inc.options(concurrency_group="io").remote()) == "inc"
    subs = [s.spec for s in fake_node.ops_of("submit_task", 4)]
    assert all(s.actor_id == c._ember_actor_id and not s.resources for s in subs)
    assert [s.method_name for s in subs] == ["inc", "pair", "io", "inc"]
    assert [s.num_returns for s in subs] == [1, 2, 1, 1]
    assert [s.concurrency_group for s in subs] == ["", "", "io", "io"]
    assert all(s.max_retries == -1 for s in subs)
    assert len(fake_node.ops_of("register_function")) == 1  # calls register nothing
    assert AsyncThing._meta.is_async


def test_named_actor_reply_errors_and_kill(runtime, fake_node):
    existing = {}

    def answer(op):
        which = op.WhichOneof("op")
        if which == "create_actor":
            cr = op.create_actor.spec.actor_creation
            rid = op.create_actor.request_id
            if cr.name in existing:
                if cr.get_if_exists:
                    return local_pb2.NodeOp(actor_reply=local_pb2.ActorReply(request_id=rid,
                                                                             actor=existing[cr.name]))
                return local_pb2.NodeOp(error=local_pb2.ErrorReply(
                    request_id=rid, error=common_pb2.TaskError(kind=common_pb2.ALREADY_EXISTS)))
            info = local_pb2.ActorInfo(actor_id=cr.actor_id, state=local_pb2.ALIVE,
                                       class_function=op.create_actor.spec.function, creation=cr)
            existing[cr.name] = info
            return local_pb2.NodeOp(actor_reply=local_pb2.ActorReply(request_id=rid, actor=info))
        get = op.get_actor
        if get.name in existing:
            return local_pb2.NodeOp(actor_reply=local_pb2.ActorReply(request_id=get.request_id,
                                                                     actor=existing[get.name]))
        return local_pb2.NodeOp(error=local_pb2.ErrorReply(
            request_id=get.request_id, error=common_pb2.TaskError(kind=common_pb2.NOT_FOUND)))

    fake_node.actor_requests = answer
    a = Counter.options(name="c", namespace="ns", lifetime="detached").remote()
    create = fake_node.ops_of("create_actor")[0]
    assert create.request_id != 0 and create.spec.actor_creation.namespace == "ns"
    assert create.spec.actor_creation.detached
    with pytest.raises(ValueError, match=r"The name c \(namespace=ns\) is already taken"):
        Counter.options(name="c", namespace="ns").remote()
    b = Counter.options(name="c", get_if_exists=True).remote()
    assert b == a and hash(b) == hash(a)
    g = ember.get_actor("c")
    assert g == a and g._ember_methods["pair"] == (2, "")
    assert fake_node.ops_of("get_actor")[0].namespace == ""
    with pytest.raises(ValueError, match="Failed to look up actor with name 'missing'"):
        ember.get_actor("missing", namespace="other")
    ember.kill(g)
    kill = fake_node.ops_of("kill_actor")[0]
    assert kill.actor_id == a._ember_actor_id and kill.no_restart
    ember.kill(g, no_restart=False)
    assert not fake_node.ops_of("kill_actor", 2)[1].no_restart
    with pytest.raises(ValueError):
        ember.kill("not an actor")


def test_handle_pickles():
    h = ActorHandle(b"a" * 16, common_pb2.FunctionDescriptor(name="m.C", function_id=b"f" * 20), "C",
                    {"m": (2, "g")}, 3)
    h2 = pickle.loads(cloudpickle.dumps(h))
    assert h2 == h and h2._ember_methods == {"m": (2, "g")} and h2._ember_max_task_retries == 3
    assert h2._ember_descriptor.function_id == b"f" * 20 and h2.m._num_returns == 2


def test_actor_died_error_maps():
    err = common_pb2.TaskError(kind=common_pb2.ACTOR_DIED, message="killed by ray.kill")
    exc = exceptions.exception_for_error(err)
    assert isinstance(exc, exceptions.ActorDiedError) and isinstance(exc, exceptions.RayActorError)
    assert "killed by ray.kill" in str(exc)
    assert isinstance(pickle.loads(pickle.dumps(exc)), exceptions.ActorDiedError)


# -- the worker side ---------------------------------------------------------

ACTOR_ID = b"A" * 16


def creation_task(cls, args=(), max_concurrency=0, groups=None, is_async=False, gpu_ids=()):
    payload = cloudpickle.dumps(cls)
    spec = common_pb2.TaskSpec(
        task_id=b"C" * 16, job_id=b"\1\0\0\0", num_returns=1,
        function=common_pb2.FunctionDescriptor(language=common_pb2.PYTHON, function_id=b"K" * 20, name="t.C"),
        actor_creation=common_pb2.ActorCreation(
            actor_id=ACTOR_ID, max_concurrency=max_concurrency, concurrency_groups=groups or {},
            is_async=is_async, class_name=cls.__name__,
            methods=[common_pb2.ActorMethod(name="m", num_returns=1)]))
    for a in args:
        spec.args.add(value=inline_value(a))
    return local_pb2.ExecuteTask(spec=spec, function_payload=payload, gpu_ids=list(gpu_ids))


_call_counter = iter(range(1, 1 << 30))


def call_task(method, args=(), num_returns=1, group=""):
    tid = b"M" * 8 + next(_call_counter).to_bytes(8, "little")
    spec = common_pb2.TaskSpec(
        task_id=tid, job_id=b"\1\0\0\0", num_returns=num_returns, actor_id=ACTOR_ID, method_name=method,
        concurrency_group=group,
        function=common_pb2.FunctionDescriptor(language=common_pb2.PYTHON, function_id=b"K" * 20, name="t.C"))
    for a in args:
        spec.args.add(value=inline_value(a))
    return local_pb2.ExecuteTask(spec=spec)


@pytest.fixture
def worker(fake_node):
    rt = CoreRuntime(fake_node.path, "secret", is_worker=True, worker_id=b"W" * 16)
    state.runtime = rt
    w = Worker(rt)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    yield w, rt
    state.runtime = None
    fake_node.close()
    t.join(5)
    rt.shutdown()


def results(fake_node, n):
    return {f.task_id: f for f in fake_node.ops_of("task_finished", n)}


class Plain:
    def __init__(self, start):
        self.n = start
        self.gpu = os.environ.get("CUDA_VISIBLE_DEVICES")

    def inc(self):
        self.n += 1
        return self.n

    def info(self):
        ctx = ember.get_runtime_context()
        return (ctx.get_actor_id(), ctx.current_actor._ember_actor_id, ctx.get_task_id(), self.gpu,
                ember.get_gpu_ids())

    def fail(self):
        raise KeyError("bad")

    def blocking(self):
        return ember.get(ember.ObjectRef(b"o" * 20))

    def bye(self):
        ember.actor.exit_actor()


def test_worker_runs_inline_actor_in_order(worker, fake_node, monkeypatch):
    calls = [call_task("inc") for _ in range(50)]
    info = call_task("info")
    fail = call_task("fail")
    ops = [local_pb2.NodeOp(execute_task=creation_task(Plain, (10,), gpu_ids=["1"]))]
    ops += [local_pb2.NodeOp(execute_task=c) for c in calls + [info, fail]]
    fake_node.push(*ops)
    got = results(fake_node, 53)
    assert decode(got[b"C" * 16].returns[0]) is None
    assert [decode(got[c.spec.task_id].returns[0]) for c in calls] == list(range(11, 61))
    actor_hex, handle_id, task_hex, gpu, gpu_ids = decode(got[info.spec.task_id].returns[0])
    assert actor_hex == ACTOR_ID.hex() and handle_id == ACTOR_ID and task_hex == info.spec.task_id.hex()
    assert gpu == "1" and gpu_ids == [1]
    with pytest.raises(KeyError):
        decode(got[fail.spec.task_id].returns[0])

    # A blocked call keeps the calls queued behind it (no hand-back).
    blocking, after = call_task("blocking"), call_task("inc")
    fake_node.push(local_pb2.NodeOp(execute_task=blocking), local_pb2.NodeOp(execute_task=after))
    blocked = fake_node.ops_of("worker_blocked")[0]
    assert list(blocked.returned_task_ids) == []
    fake_node.push(local_pb2.NodeOp(object_ready=local_pb2.ObjectReady(object_id=b"o" * 20,
                                                                       value=inline_value("v"))))
    got = results(fake_node, 55)
    assert decode(got[blocking.spec.task_id].returns[0]) == "v"
    assert decode(got[after.spec.task_id].returns[0]) == 61

    exits = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    bye = call_task("bye")
    fake_node.push(local_pb2.NodeOp(execute_task=bye))
    got = results(fake_node, 56)
    assert got[bye.spec.task_id].actor_exit and decode(got[bye.spec.task_id].returns[0]) is None
    deadline = time.time() + 5
    while not exits and time.time() < deadline:
        time.sleep(0.01)
    assert exits == [0]


class BadInit:
    def __init__(self):
        raise ValueError("no init")

    def m(self):
        return 1


def test_worker_constructor_error_answers_every_call(worker, fake_node):
    c = call_task("m", num_returns=2)
    fake_node.push(local_pb2.NodeOp(execute_task=creation_task(BadInit)), local_pb2.NodeOp(execute_task=c))
    got = results(fake_node, 2)
    for value in list(got[b"C" * 16].returns) + list(got[c.spec.task_id].returns):
        with pytest.raises(ValueError, match="no init"):
            decode(value)


class Sleepy:
    def sleep(self, s):
        time.sleep(s)
        return threading.current_thread().name


def test_worker_threaded_actor_overlaps(worker, fake_node):
    calls = [call_task("sleep", (0.3,)) for _ in range(4)]
    io = call_task("sleep", (0.0,), group="io")
    start = time.time()
    fake_node.push(local_pb2.NodeOp(execute_task=creation_task(Sleepy, max_concurrency=4, groups={"io": 1})),
                   *[local_pb2.NodeOp(execute_task=c) for c in calls + [io]])
    got = results(fake_node, 6)
    assert time.time() - start < 1.0
    assert decode(got[io.spec.task_id].returns[0]).startswith("ember-actor-io")


class Aio:
    def __init__(self):
        self.running = 0
        self.peak = 0

    async def work(self, x):
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.2)
        self.running -= 1
        return x, ember.get_runtime_context().get_task_id()

    def peak_seen(self):
        return self.peak

    async def bye(self):
        ember.actor.exit_actor()


def test_worker_async_actor_runs_calls_concurrently(worker, fake_node, monkeypatch):
    calls = [call_task("work", (i,)) for i in range(20)]
    limited = [call_task("work", (i,), group="one") for i in range(3)]
    start = time.time()
    fake_node.push(local_pb2.NodeOp(execute_task=creation_task(Aio, is_async=True, groups={"one": 1})),
                   *[local_pb2.NodeOp(execute_task=c) for c in calls + limited])
    got = results(fake_node, 24)
    elapsed = time.time() - start
    assert 0.6 <= elapsed < 2.0  # the 20 overlap; the "one" group runs its 3 one at a time
    for i, c in enumerate(calls):
        assert decode(got[c.spec.task_id].returns[0]) == (i, c.spec.task_id.hex())
    peak = call_task("peak_seen")
    fake_node.push(local_pb2.NodeOp(execute_task=peak))
    assert decode(results(fake_node, 25)[peak.spec.task_id].returns[0]) >= 20

    exits = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    bye = call_task("bye")
    fake_node.push(local_pb2.NodeOp(execute_task=bye))
    assert results(fake_node, 26)[bye.spec.task_id].actor_exit
    deadline = time.time() + 5
    while not exits and time.time() < deadline:
        time.sleep(0.01)
    assert exits == [0]
