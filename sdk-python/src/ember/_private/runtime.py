"""``CoreRuntime``: one per process, the state behind the public API.

It owns the connection to the node and:

* the object table: ObjectId → ``ObjectValue`` for objects whose value has
  arrived (``ObjectReady``) or that this process put;
* shared-memory grants: a location the node sends (``ObjectReady`` answering
  ``GetObjects{map}``, or a task argument) pins the object until this process
  releases it (``RefUpdate.unmap``) — when the mapping made from it, and every
  buffer pointing into it, is gone. A location in the object table is never
  mapped directly: the node may have spilled the object and reused its block;
* local reference counts, with the batch of ``RefUpdate`` changes that goes
  out with the next message sent (``ObjectRef.__del__`` only queues the id);
* the function-registration cache and task-id generator;
* ``submit_task``, ``put``, ``get``, ``wait``, ``cancel``, ``cluster_status``;
* actors: ``create_actor``, ``get_actor``, ``kill_actor`` (method calls are
  ``submit_task`` with an actor's static spec);
* for workers: the queue of ``ExecuteTask`` ops and the results not yet sent.

The running task is ``current_task``: the task a worker's main loop runs, or,
in a threaded or async actor, the call running in this thread or asyncio task
(a context variable set by the worker for each concurrent call).

All node messages are applied by ``_on_message``, called by whichever thread
is reading (see protocol.py).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import threading
import weakref
from collections import deque

from ember import exceptions
from ember._private import ids, serialization, wire
from ember._private.object_ref import ObjectRef, new_owned_ref
from ember._private.protocol import Connection
from ember._private.shm import Arena
from ember.v1 import common_pb2, local_pb2

logger = logging.getLogger("ember")

_ClientOp = local_pb2.ClientOp
_ObjectValue = common_pb2.ObjectValue
_CREATE_TIMEOUT_MS = int(os.environ.get("EMBER_PUT_TIMEOUT_MS", "30000"))
_FLUSH_THRESHOLD = 512
_ERROR_FORMAT = common_pb2.ERROR
_PICKLE_FORMAT = common_pb2.PICKLE
_FIRST_RETURN = ids.return_object_id(b"", 0)  # the index part of a task's first return id
_MAX_SUBMIT_HEADS = 256
# Bodies of values that lie in the node's store (read by mapping a granted location).
_STORED = ("shm", "stored_size")


def _op(**kwargs) -> bytes:
    return _ClientOp(**kwargs).SerializeToString()


_WORKER_UNBLOCKED = _op(worker_unblocked=local_pb2.WorkerUnblocked())


#: The actor method call running in this thread or asyncio task (concurrent actors only).
current_call: contextvars.ContextVar = contextvars.ContextVar("ember_current_call", default=None)


class CoreRuntime:
    """The process's connection to its node and everything it tracks about objects and tasks."""

    def __init__(
        self,
        socket_path: str,
        token: str,
        *,
        is_worker: bool = False,
        worker_id: bytes = b"",
        namespace: str = "",
        code_search_path: list[str] | tuple = (),
        session: dict | None = None,
    ):
        self.is_worker = is_worker
        self.worker_id = worker_id
        self.namespace = namespace
        self.session = session or {}
        # Values that arrived or were put here, by object id.
        self.objects: dict[bytes, common_pb2.ObjectValue] = {}
        # Ids the node pushes to us (our submissions' returns, GetObjects asked).
        self._requested: set[bytes] = set()
        # Local reference counts; adds not yet sent; ids released by __del__.
        self._counts: dict[bytes, int] = {}
        self._ref_lock = threading.Lock()
        self._adds: dict[bytes, None] = {}
        self._released: deque[bytes] = deque()
        self._pending_removes: list[bytes] = []
        # Read-only mappings of shm objects (weak: the mapping lives as long as its buffers).
        self._maps: dict[bytes, tuple[weakref.ref, int]] = {}
        # Granted locations not mapped yet, ids whose grant is awaited, failed map requests,
        # and grants to give back (one entry per location received).
        self._grants: dict[bytes, common_pb2.ShmLocation] = {}
        self._map_waiting: set[bytes] = set()
        self._map_errors: dict[bytes, common_pb2.ObjectValue] = {}
        self._unmaps: deque[bytes] = deque()
        self._registered: set[bytes] = set()
        #: Static spec (and, in a task, its job id) -> ``wire.submit_head`` (see ``submit_no_args``).
        self._submit_heads: dict[bytes | tuple[bytes, bytes], bytes] = {}
        self._task_ids = ids.TaskIdGenerator()
        self._request_ids = itertools.count(1)
        self._replies: dict[int, object] = {}
        self._errors: dict[int, common_pb2.TaskError] = {}
        self._fatal: BaseException | None = None
        self._warned: set[str] = set()
        # Worker state: tasks received and not started, results not yet sent.
        self.exec_queue: deque[local_pb2.ExecuteTask] = deque()
        self.blocked = False
        self._current_task: local_pb2.ExecuteTask | None = None
        # Actor workers: the actor's id and its creation ExecuteTask. Calls
        # queued behind a blocked call stay here (they are bound to this actor).
        self.actor_id: bytes = b""
        self.actor_task: local_pb2.ExecuteTask | None = None
        self._blocked_lock = threading.Lock()
        self._blocked_count = 0
        self._finished: list[bytes] = []
        # Function code and job code paths seen in ExecuteTask ops (worker).
        self.function_payloads: dict[bytes, bytes] = {}
        self.code_search_path: list[str] = []
        self._finished_lock = threading.Lock()
        # Futures waiting for objects (ObjectRef.future()).
        self._futures: list = []
        self._futures_lock = threading.Lock()
        self._futures_thread: threading.Thread | None = None
        self._job_field: bytes | None = None
        self.hello: local_pb2.HelloReply | None = None

        self.conn = Connection(socket_path, self._on_message)
        hello = local_pb2.Hello(
            token=token,
            kind=local_pb2.WORKER if is_worker else local_pb2.DRIVER,
            worker_id=worker_id,
            pid=os.getpid(),
            language=common_pb2.PYTHON,
            namespace=namespace,
            code_search_path=list(code_search_path),
        )
        self.conn.send([_op(hello=hello)])
        try:
            self._wait(lambda: self.hello is not None or self._fatal is not None, None)
        except BaseException:
            self.conn.close()
            raise
        if self._fatal is not None:
            self.conn.close()
            raise self._fatal
        reply = self.hello
        self.node_id: bytes = reply.node_id
        self.job_id: bytes = reply.job_id
        self.max_inline_bytes: int = reply.max_inline_bytes or 100 * 1024
        self.node_address: str = reply.node_address
        self.session_dir: str = reply.session_dir
        self.arena = Arena(reply.shm_path, reply.shm_size) if reply.shm_path else None
        self._job_field = wire.encode_job_id(self.job_id)
        self.conn.wrap_ops = self._wrap_ops

    @property
    def current_task(self) -> local_pb2.ExecuteTask | None:
        """The task (or actor method call) running here; None in a driver or between tasks."""
        call = current_call.get()
        return call if call is not None else self._current_task

    @current_task.setter
    def current_task(self, task: local_pb2.ExecuteTask | None) -> None:
        self._current_task = task

    # -- receiving -------------------------------------------------------

    def _on_message(self, msg: local_pb2.NodeMessage) -> None:
        handback = None
        for op in msg.ops:
            which = op.WhichOneof("op")
            if which == "object_ready":
                ready = op.object_ready
                oid = ready.object_id
                value = ready.value
                body = value.WhichOneof("body")
                if body == "shm":
                    self._accept_grant(oid, value.shm)
                elif oid in self._map_waiting and value.format == _ERROR_FORMAT:
                    self._map_errors[oid] = value  # this map request failed (a restore)
                    continue
                with self._ref_lock:
                    if oid in self._counts:
                        self.objects[oid] = value
            elif which == "execute_task":
                task = op.execute_task
                if task.function_payload:
                    # Kept even for tasks handed back: the node sends a function's
                    # code once per worker, and may not resend it.
                    self.function_payloads[task.spec.function.function_id] = task.function_payload
                if task.code_search_path:
                    self.code_search_path.extend(task.code_search_path)
                if self.blocked and not self.actor_id:
                    if handback is None:
                        handback = []
                    handback.append(task.spec.task_id)
                    self.release_grants(task)
                else:
                    self.exec_queue.append(task)
            elif which == "create_object_reply":
                self._replies[op.create_object_reply.request_id] = op.create_object_reply
            elif which == "info_reply":
                self._replies[op.info_reply.request_id] = op.info_reply
            elif which == "actor_reply":
                self._replies[op.actor_reply.request_id] = op.actor_reply
            elif which == "error":
                self._on_error(op.error)
            elif which == "warning":
                self._warn(op.warning.message)
            elif which == "hello_reply":
                self.hello = op.hello_reply
        if handback:
            self.conn.send([_op(worker_blocked=local_pb2.WorkerBlocked(returned_task_ids=handback))])

    def _on_error(self, reply: local_pb2.ErrorReply) -> None:
        if reply.request_id:
            self._errors[reply.request_id] = reply.error
            return
        exc = exceptions.exception_for_error(reply.error)
        if self.hello is None or reply.error.kind == common_pb2.UNAUTHENTICATED:
            self._fatal = exc
        else:
            self._warn(f"the ember node reported an error: {exc}")

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)

    def _wait(self, predicate, timeout: float | None) -> bool:
        try:
            return self.conn.wait_until(predicate, timeout)
        except exceptions.LocalRayletDiedError:
            if self._fatal is not None:
                raise self._fatal from None
            raise

    # -- sending and reference counts -------------------------------------

    def _wrap_ops(self, ops: list[bytes]) -> list[bytes]:
        """Called under the send lock. Order on the wire: reference adds,
        results, ``ops``, reference removes. Adds go first so that a borrowed
        ref (say, one nested in a task's argument) is held before the result
        that ends the task releases the task's own hold; removes go last so
        the ops that now hold an object reach the node before the release."""
        if self._finished:
            with self._finished_lock:
                finished, self._finished = self._finished, []
            ops = finished + ops
        if self._released or self._adds or self._pending_removes or self._unmaps:
            adds, removes = self._collect_ref_changes()
            unmaps = self._take_unmaps()
            if adds:
                ops = [wire.encode_ref_update(adds, [])] + ops
            if removes or unmaps:
                ops = ops + [wire.encode_ref_update([], removes, unmaps)]
        return ops

    def _take_unmaps(self) -> list[bytes]:
        unmaps = self._unmaps
        out = []
        while unmaps:
            try:
                out.append(unmaps.popleft())
            except IndexError:
                break
        return out

    def send(self, ops: list[bytes]) -> None:
        """Send ops (plus pending results and reference updates) in one message."""
        self.conn.send(ops)

    def flush(self) -> None:
        """Send pending results and reference updates now."""
        if (self._finished or self._released or self._adds or self._pending_removes or self._unmaps
                or self.conn.holds_ops):
            self.conn.send([])

    def add_borrowed_ref(self, object_id: bytes) -> None:
        """Count a reference this process did not create (an ``add`` on 0 → 1)."""
        with self._ref_lock:
            count = self._counts.get(object_id, 0)
            self._counts[object_id] = count + 1
            if not count:
                self._adds[object_id] = None

    def _add_owned_refs(self, object_ids: list[bytes]) -> None:
        """Count references implied by SubmitTask or PutObject (no ``add`` sent)."""
        counts = self._counts
        with self._ref_lock:
            for oid in object_ids:
                counts[oid] = counts.get(oid, 0) + 1

    def local_ref_count(self, object_id: bytes) -> int:
        """This process's count for ``object_id`` (releases not yet processed included)."""
        self._process_released()
        return self._counts.get(object_id, 0)

    def _process_released(self) -> list[bytes]:
        """Apply queued releases; return the ids whose count reached 0 and must be removed."""
        released = self._released
        removes = []
        counts = self._counts
        with self._ref_lock:
            while released:
                try:
                    oid = released.popleft()
                except IndexError:
                    break
                count = counts.get(oid)
                if count is None:
                    continue
                if count > 1:
                    counts[oid] = count - 1
                    continue
                del counts[oid]
                if oid in self._adds:
                    del self._adds[oid]
                else:
                    removes.append(oid)
                self.objects.pop(oid, None)
                self._requested.discard(oid)
                self._maps.pop(oid, None)
                if self._grants.pop(oid, None) is not None:
                    self._unmaps.append(oid)  # granted but never mapped
            self._pending_removes.extend(removes)
        return removes

    def _collect_ref_changes(self) -> tuple[list[bytes], list[bytes]]:
        """The pending (adds, removes)."""
        self._process_released()
        with self._ref_lock:
            removes, self._pending_removes = self._pending_removes, []
            adds = list(self._adds)
            self._adds.clear()
        return adds, removes

    # -- tasks -----------------------------------------------------------

    def job_field(self) -> bytes:
        """The encoded ``TaskSpec.job_id`` for tasks submitted now."""
        task = self.current_task
        if task is not None and task.spec.job_id:
            return wire.encode_job_id(task.spec.job_id)
        return self._job_field

    def submit_task(self, fn, static_spec: bytes, num_returns: int, args, kwargs,
                    cross_language: bool = False) -> list[ObjectRef]:
        """Submit a task of ``fn`` (a ``FunctionHandle``; None for an actor method call, whose
        ``static_spec`` names the actor, or a call by name); return its return refs without
        waiting. ``cross_language``: arguments are msgpack/Arrow, never pickle."""
        ops, task_id, parts, temps = self._spec_parts(fn, static_spec, args, kwargs, cross_language)
        ops.append(wire.encode_submit(parts))
        return_ids = ids.return_object_ids(task_id, num_returns)
        if return_ids:
            self._add_owned_refs(return_ids)
            self._requested.update(return_ids)
        # A task's submissions are held from the first: a parent submits its
        # children and waits for them, and they go out with its WorkerBlocked
        # in one message (its get or wait sends what is held, as does its
        # return). Not in an actor's pool or event-loop thread, which has no
        # such end to wait for.
        self.conn.send_coalesced(ops, hold=self.is_worker and current_call.get() is None)
        # `temps` (large arguments put for this task) is dropped here: the task holds them now.
        del temps
        return [new_owned_ref(self, oid) for oid in return_ids]

    def submit_no_args(self, fn, static_spec: bytes) -> ObjectRef | None:
        """``submit_task(fn, static_spec, 1, (), {})[0]``, made from a head encoded once per
        remote function (or actor method) and job (``wire.submit_head``) and the task fields.
        None, having sent nothing, where that does not apply (a function not registered yet)."""
        if fn is not None and fn.function_id not in self._registered:
            return None
        current = self.current_task
        if current is None:
            if self._job_field is None:
                return None
            key, parent = static_spec, None
        else:
            spec = current.spec
            parent = spec.task_id
            if len(parent) != 16:
                return None
            key = (static_spec, spec.job_id)
        heads = self._submit_heads
        head = heads.get(key)
        if head is None:
            if len(heads) >= _MAX_SUBMIT_HEADS:  # .options(name=...) per call makes a spec per call
                heads.clear()
            job = self._job_field if current is None else self.job_field()
            head = heads[key] = wire.submit_head(static_spec, job, parent is not None)
        task_id = self._task_ids.next()
        oid = task_id + _FIRST_RETURN
        counts = self._counts
        with self._ref_lock:
            counts[oid] = counts.get(oid, 0) + 1
        self._requested.add(oid)
        # Held in a worker's task, as submit_task does.
        self.conn.send_coalesced([head + wire.spec_task_fields(task_id, parent)],
                                 hold=self.is_worker and current_call.get() is None)
        return new_owned_ref(self, oid)

    def _spec_parts(self, fn, static_spec: bytes, args, kwargs, cross_language: bool = False):
        """The pieces of a new ``TaskSpec``: ``(ops, task_id, parts, temps)``.

        ``ops`` starts with the function's registration when this process has
        not sent it yet (``fn`` None: an actor call, nothing to register);
        ``parts`` holds the static spec, job and task ids and the arguments;
        ``temps`` keeps large arguments put for the call alive until it is sent.
        """
        ops = []
        if fn is not None and fn.function_id not in self._registered:
            self._registered.add(fn.function_id)
            ops.append(fn.register_op)
        task_id = self._task_ids.next()
        current = self.current_task
        parts = [
            static_spec,
            self._job_field if current is None else self.job_field(),
            wire.spec_task_fields(task_id, current.spec.task_id if current is not None else None),
        ]
        temps = self._encode_args(parts, args, kwargs, cross_language) if args or kwargs else None
        return ops, task_id, parts, temps

    def _encode_args(self, parts: list[bytes], args, kwargs, cross_language: bool = False):
        """Append the ``TaskSpec.args`` entries; return the large arguments put for the call."""
        temps = None
        if args:
            for arg in args:
                if type(arg) is ObjectRef:
                    parts.append(wire.encode_ref_arg(arg._id))
                elif cross_language:
                    temps = self._encode_value_arg(parts, arg, None, temps,
                                                   serialization.serialize_msgpack(arg))
                else:
                    temps = self._encode_value_arg(parts, arg, None, temps)
        if kwargs:
            for key, arg in kwargs.items():
                if type(arg) is ObjectRef:
                    parts.append(wire.encode_ref_arg(arg._id, key))
                else:
                    temps = self._encode_value_arg(parts, arg, key, temps)
        return temps

    def plain_inline_value(self, value) -> bytes | None:
        """The encoded inline ``ObjectValue`` of a plain value (None, a number, a
        short string: pickled in one step), or None when ``value`` needs
        ``serialization.serialize`` (any other type, or too large to go inline)."""
        data = serialization.pickle_plain(value)
        if data is None or len(data) > self.max_inline_bytes:
            return None
        return wire.encode_inline_value(_PICKLE_FORMAT, data)

    def _encode_value_arg(self, parts: list[bytes], arg, keyword, temps, ser=None):
        if ser is None:
            value = self.plain_inline_value(arg)
            if value is not None:
                parts.append(wire.encode_value_arg(value, keyword))
                return temps
            ser = serialization.serialize(arg)
        if ser.size <= self.max_inline_bytes:
            value = wire.encode_value(ser.format, ser.metadata, ser.to_bytes(), None, ser.contained_refs)
            parts.append(wire.encode_value_arg(value, keyword))
            return temps
        ref = self.put_serialized(ser)
        parts.append(wire.encode_ref_arg(ref._id, keyword))
        if temps is None:
            temps = []
        temps.append(ref)
        return temps

    # -- actors ----------------------------------------------------------

    def create_actor(self, fn, static_spec: bytes, request_id: int, args, kwargs,
                     timeout: float | None = None, cross_language: bool = False):
        """Send ``CreateActor`` for the class ``fn`` (a ``FunctionHandle``, registered first).

        ``static_spec`` is the encoded ``TaskSpec`` without ids and arguments.
        With a ``request_id`` waits for the answer and returns ``(ActorInfo,
        None)`` or ``(None, TaskError)``; with 0 returns ``(None, None)`` at once.
        The creation's return object is not kept: its reference is dropped.
        """
        ops, task_id, parts, temps = self._spec_parts(fn, static_spec, args, kwargs, cross_language)
        ops.append(wire.encode_create_actor(request_id, parts))
        # The submitter holds the creation's return (None, or the __init__ error,
        # which the node also gives every method call): let it go at once.
        ops.append(wire.encode_ref_update([], [ids.return_object_id(task_id, 0)]))
        if not request_id:
            self.send(ops)
            del temps
            return None, None
        reply, error = self._call(ops, request_id, timeout)
        del temps
        return (reply.actor if reply is not None else None), error

    def get_actor(self, name: str, namespace: str, timeout: float | None = None):
        """Look up a named actor: ``(ActorInfo, None)`` or ``(None, TaskError)``."""
        rid = next(self._request_ids)
        op = _op(get_actor=local_pb2.GetActor(request_id=rid, name=name, namespace=namespace))
        reply, error = self._call([op], rid, timeout)
        return (reply.actor if reply is not None else None), error

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        """Ask the node to kill an actor's worker (no answer)."""
        self.send([_op(kill_actor=local_pb2.KillActor(actor_id=actor_id, no_restart=no_restart))])

    def _call(self, ops: list[bytes], rid: int, timeout: float | None):
        """Send ``ops`` and wait for the reply (or ``ErrorReply``) to request ``rid``."""
        self.send(ops)
        replies, errors = self._replies, self._errors
        if not self._wait(lambda: rid in replies or rid in errors, timeout):
            raise exceptions.GetTimeoutError("the ember node did not answer in time")
        if rid in errors:
            return None, errors.pop(rid)
        return replies.pop(rid), None

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> None:
        """Ask the node to cancel a task."""
        self.send([_op(cancel_task=local_pb2.CancelTask(task_id=task_id, force=force, recursive=recursive))])

    # -- objects ---------------------------------------------------------

    def put(self, value) -> ObjectRef:
        """Store ``value`` and return its ObjectRef."""
        return self.put_serialized(serialization.serialize(value))

    def put_serialized(self, ser: serialization.SerializedValue) -> ObjectRef:
        """Store an already serialized value under a fresh put id."""
        oid = ids.put_object_id()
        contained = list(ser.contained_refs)
        if ser.size <= self.max_inline_bytes:
            value = _ObjectValue(format=ser.format, metadata=ser.metadata, inline_data=ser.to_bytes(),
                                 contained_refs=contained)
        else:
            offset, size = self.write_shm(oid, ser)
            value = _ObjectValue(format=ser.format, metadata=ser.metadata,
                                 shm=common_pb2.ShmLocation(offset=offset, size=size),
                                 contained_refs=contained)
        self._add_owned_refs([oid])
        ref = new_owned_ref(self, oid)
        with self._ref_lock:
            self.objects[oid] = value
        self.send([_op(put_object=local_pb2.PutObject(object_id=oid, value=value))])
        return ref

    def write_shm(self, object_id: bytes, ser: serialization.SerializedValue) -> tuple[int, int]:
        """Allocate a block for ``object_id``, copy ``ser`` into it (not sealed); return (offset, size)."""
        if self.arena is None:
            raise exceptions.RaySystemError("the ember node has no shared-memory arena")
        rid = next(self._request_ids)
        create = local_pb2.CreateObject(request_id=rid, object_id=object_id, size=ser.size,
                                        timeout_ms=_CREATE_TIMEOUT_MS)
        self.send([_op(create_object=create)])
        replies, errors = self._replies, self._errors
        self._wait(lambda: rid in replies or rid in errors, None)
        if rid in errors:
            err = errors.pop(rid)
            cls = exceptions.ObjectStoreFullError if err.kind in (
                common_pb2.OBJECT_STORE_FULL, common_pb2.ERROR_KIND_UNSPECIFIED) else None
            raise (cls(err.message) if cls else exceptions.exception_for_error(err))
        loc = replies.pop(rid).location
        try:
            self.arena.write(loc.offset, ser.size, ser)
        except BaseException:
            self.send([_op(abort_object=local_pb2.AbortObject(object_id=object_id))])
            raise
        return loc.offset, ser.size

    def _request(self, object_ids) -> None:
        """Ask for ObjectReady of the ids the node will not push by itself."""
        requested = self._requested
        ask = [oid for oid in object_ids if oid not in requested]
        if ask:
            requested.update(ask)
            self.send([_op(get_objects=local_pb2.GetObjects(object_ids=ask))])

    def get(self, object_ids: list[bytes], timeout: float | None = None) -> list:
        """The values of ``object_ids`` (raising the first error), waiting up to ``timeout``."""
        objects = self.objects
        missing = [oid for oid in object_ids if oid not in objects]
        if len(self._released) > _FLUSH_THRESHOLD:
            self.flush()
        if missing:
            self._await_all(missing, timeout)
        if len(object_ids) == 1:
            oid = object_ids[0]
            return [self.read_value(oid, objects[oid])]
        # One pass for the bodies: shared-memory values are mapped together
        # first; inline ones (the many small results) are read right here.
        values = [objects[oid] for oid in object_ids]
        bodies = [value.WhichOneof("body") for value in values]
        stored = [oid for oid, body in zip(object_ids, bodies) if body in _STORED]
        if stored:
            self._map_all(stored)
        deserialize = serialization.deserialize
        return [self.read_value(oid, value) if body in _STORED
                else deserialize(value.format, value.metadata, value.inline_data)
                for oid, value, body in zip(object_ids, values, bodies)]

    def _await_all(self, missing: list[bytes], timeout: float | None) -> None:
        self._request(missing)
        objects = self.objects
        missing.reverse()

        def ready():
            while missing and missing[-1] in objects:
                missing.pop()
            return not missing

        if timeout is not None and timeout <= 0:
            self.conn.poll_once()
            if not ready():
                raise exceptions.GetTimeoutError("Get timed out: some object(s) not ready.")
            return
        # Entering the blocked state sends what is pending with WorkerBlocked,
        # in one message; otherwise flush it here.
        blocked = self._enter_blocked() if not ready() else False
        if not blocked:
            self.flush()
        try:
            if not self._wait(ready, timeout):
                raise exceptions.GetTimeoutError("Get timed out: some object(s) not ready.")
        finally:
            if blocked:
                self._exit_blocked()

    def wait(self, object_ids: list[bytes], num_returns: int, timeout: float | None) -> list[bool]:
        """Wait until ``num_returns`` of ``object_ids`` are ready (or ``timeout``); return readiness flags."""
        objects = self.objects
        flags = [oid in objects for oid in object_ids]
        if flags.count(True) >= num_returns:
            return flags  # the common case in a wait loop: nothing to ask for or wait on
        self._request([oid for oid, ready in zip(object_ids, flags) if not ready])

        def enough():
            n = 0
            for oid in object_ids:
                if oid in objects:
                    n += 1
                    if n >= num_returns:
                        return True
            return False

        if timeout is not None and timeout <= 0:
            self.conn.poll_once()
        elif not enough():
            blocked = self._enter_blocked()  # sends what is pending, or:
            if not blocked:
                self.flush()
            try:
                self._wait(enough, timeout)
            finally:
                if blocked:
                    self._exit_blocked()
        return [oid in objects for oid in object_ids]

    def is_ready(self, object_id: bytes) -> bool:
        return object_id in self.objects

    def read_value(self, object_id: bytes, value: common_pb2.ObjectValue):
        """Deserialize an object's value (mapping shared memory when it lives there)."""
        if value.WhichOneof("body") in _STORED:
            data = self.map_object(object_id)
        else:
            data = value.inline_data
        return serialization.deserialize(value.format, value.metadata, data)

    def _accept_grant(self, object_id: bytes, location: common_pb2.ShmLocation) -> None:
        """A location arrived: keep it for mapping, or give it back at once when
        a live mapping already holds one (or nobody here wants it)."""
        cached = self._maps.get(object_id)
        live = cached is not None and cached[0]() is not None
        wanted = object_id in self._map_waiting or object_id in self._counts
        if live or not wanted or object_id in self._grants:
            self._unmaps.append(object_id)
        else:
            self._grants[object_id] = location

    def _map_all(self, object_ids: list[bytes]) -> None:
        """Ask for the locations of the objects that have no live mapping or grant, in one message."""
        need = []
        for oid in object_ids:
            cached = self._maps.get(oid)
            if (cached is None or cached[0]() is None) and oid not in self._grants and oid not in need:
                need.append(oid)
        if not need:
            return
        grants, errors, waiting = self._grants, self._map_errors, self._map_waiting
        waiting.update(need)
        try:
            self.send([_op(get_objects=local_pb2.GetObjects(object_ids=need, map=True))])
            self._wait(lambda: all(oid in grants or oid in errors for oid in need), None)
        finally:
            waiting.difference_update(need)

    def map_object(self, object_id: bytes, grant: common_pb2.ShmLocation | None = None) -> memoryview:
        """A read-only view of a shm object, mapped from a location the node granted.

        ``grant``: a location that came with a task argument; otherwise the
        node is asked for one. The mapping is cached weakly: buffers made from
        the view (numpy arrays from ``get``) keep it alive, and when the last
        one goes a finalizer gives the grant back, so the node may spill or
        free the object again.
        """
        cached = self._maps.get(object_id)
        mm = cached[0]() if cached is not None else None
        if mm is not None:
            if grant is not None:
                self._unmaps.append(object_id)  # the live mapping holds a grant already
            _, delta, size = cached
        else:
            if grant is None:
                grant = self._grants.pop(object_id, None)
                if grant is None:
                    self._map_all([object_id])
                    grant = self._grants.pop(object_id, None)
                    if grant is None:
                        error = self._map_errors.pop(object_id, None)
                        if error is not None:
                            raise serialization.error_from_data(error.inline_data)
                        raise exceptions.ObjectLostError(f"object {object_id.hex()} has no location")
            size = grant.size
            try:
                mm, delta = self.arena.map_read(grant.offset, size)
            except BaseException:
                self._unmaps.append(object_id)
                raise
            weakref.finalize(mm, self._unmaps.append, object_id)
            self._maps[object_id] = (weakref.ref(mm), delta, size)
        view = memoryview(mm)
        return view[delta: delta + size] if delta else view

    def release_grants(self, task: local_pb2.ExecuteTask) -> None:
        """Give back the argument locations of a task this worker will not run."""
        for arg in task.spec.args:
            if arg.object_ref and arg.value.WhichOneof("body") == "shm":
                self._unmaps.append(arg.object_ref)

    # -- worker blocking -----------------------------------------------

    def _enter_blocked(self) -> bool:
        """In a worker running a task: hand back queued tasks and tell the node we wait.

        An actor's calls are bound to it and stay queued: its worker sends
        ``WorkerBlocked`` with no tasks, once while any of its calls wait.
        """
        if not self.is_worker or self.current_task is None:
            return False
        if self.actor_id:
            with self._blocked_lock:
                self._blocked_count += 1
                if self._blocked_count == 1:
                    # Before held submissions, as below.
                    self.conn.send([_op(worker_blocked=local_pb2.WorkerBlocked())], before_held=True)
            return True
        if self.blocked:
            return False
        self.blocked = True
        queued = [task.spec.task_id for task in self.exec_queue]
        for task in self.exec_queue:
            self.release_grants(task)
        self.exec_queue.clear()
        if not queued and self.conn.unhold(_WORKER_UNBLOCKED):
            # Blocked again before the WorkerUnblocked of its last get went
            # out: to the node it never stopped being blocked (its CPU is
            # still lent), and neither message is needed. What is held (the
            # children) goes now.
            self.send([])
            return True
        # Before the submissions held with it (a parent's children): the node
        # lends this task's CPU first and places the children on it, rather
        # than queue the second child behind the first on one worker.
        self.conn.send([_op(worker_blocked=local_pb2.WorkerBlocked(returned_task_ids=queued))],
                       before_held=True)
        return True

    def _exit_blocked(self) -> None:
        if self.actor_id:
            with self._blocked_lock:
                self._blocked_count -= 1
                if self._blocked_count == 0 and self.conn.alive:
                    self.send([_op(worker_unblocked=local_pb2.WorkerUnblocked())])
            return
        self.blocked = False
        if self.conn.alive:
            # Held (sent with the task's result, or whatever goes next, or
            # after the submit-flusher's delay): usually the task returns
            # right after its get, and both go in one message.
            self.conn.hold([_WORKER_UNBLOCKED])

    def add_finished(self, op: bytes) -> None:
        """Queue an encoded TaskFinished op; it goes out with the next message."""
        with self._finished_lock:
            self._finished.append(op)

    def next_task(self, timeout: float | None = None):
        """Worker: the next ExecuteTask, reading from the node when none is queued (None on timeout)."""
        queue = self.exec_queue
        if not queue:
            self.flush()
            if not self._wait(lambda: bool(queue), timeout):
                return None
        return queue.popleft()

    # -- info and futures --------------------------------------------------

    def cluster_status(self, timeout: float | None = 30.0) -> local_pb2.ClusterStatus:
        """The cluster's nodes, resources and task counts."""
        rid = next(self._request_ids)
        self.send([_op(info_request=local_pb2.InfoRequest(request_id=rid, kind=local_pb2.CLUSTER_STATUS))])
        replies, errors = self._replies, self._errors
        if not self._wait(lambda: rid in replies or rid in errors, timeout):
            raise exceptions.GetTimeoutError("the ember node did not answer the cluster status request")
        if rid in errors:
            raise exceptions.exception_for_error(errors.pop(rid))
        return replies.pop(rid).cluster_status

    def future_for(self, ref: ObjectRef):
        """A Future completed with ``ref``'s value by a helper thread."""
        import concurrent.futures

        fut = concurrent.futures.Future()
        self._request([ref._id])
        if ref._id in self.objects:
            self._complete_future(ref, fut)
            return fut
        with self._futures_lock:
            self._futures.append((ref, fut))
            if self._futures_thread is None:
                self._futures_thread = threading.Thread(target=self._futures_loop, name="ember-futures",
                                                        daemon=True)
                self._futures_thread.start()
        return fut

    def _complete_future(self, ref: ObjectRef, fut) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(self.read_value(ref._id, self.objects[ref._id]))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)

    def _futures_loop(self) -> None:
        objects = self.objects
        futures = self._futures
        while True:
            try:
                self._wait(lambda: any(r._id in objects for r, _ in futures), 5.0)
            except BaseException as exc:  # noqa: BLE001 - the connection died: fail every future
                with self._futures_lock:
                    pending, self._futures[:] = list(futures), []
                    self._futures_thread = None
                for _, fut in pending:
                    if fut.set_running_or_notify_cancel():
                        fut.set_exception(exc)
                return
            with self._futures_lock:
                done = [(r, f) for r, f in futures if r._id in objects]
                futures[:] = [(r, f) for r, f in futures if r._id not in objects]
                if not futures and not done:
                    self._futures_thread = None
                    return
            for ref, fut in done:
                self._complete_future(ref, fut)

    # -- shutdown --------------------------------------------------------

    def shutdown(self) -> None:
        """Send what is pending and close the connection."""
        try:
            if self.conn.alive:
                self.flush()
        except exceptions.LocalRayletDiedError:
            pass  # the node is already gone: nothing left to tell it
        self.conn.close()
        if self.arena is not None:
            self.arena.close()

