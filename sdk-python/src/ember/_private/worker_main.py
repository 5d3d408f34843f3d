"""The worker process: run the tasks the node sends, send back their results.

Started by the node (``python -m ember._private.worker_main``, or forked by the
forkserver, which calls ``main``). Environment: ``EMBER_NODE_SOCKET``,
``EMBER_TOKEN``, ``EMBER_WORKER_ID`` (hex).

The loop takes ``ExecuteTask`` ops in order, runs each and queues its
``TaskFinished``; results go out when no received task is left to run, after
1 ms, or with anything else the worker sends (a nested submit, a
``WorkerBlocked``). An exception is a value: every return holds the same
``ERROR`` value. SIGINT (sent by the node to cancel the running task) raises
``KeyboardInterrupt`` only while a task runs.

Actors: an ``ExecuteTask`` with ``spec.actor_creation`` makes this worker the
actor's for life. The constructor runs like a task (its one return is None,
or the error, which then answers every later call too). Method calls
(``spec.method_name``) then run

* inline in the main loop, in order (a sync actor with max_concurrency 1);
* on a thread pool per concurrency group (a sync actor with max_concurrency
  > 1 or concurrency groups), the main loop dispatching while calls run;
* on one asyncio event loop in its own thread (an async actor), each call a
  task bounded by its group's semaphore (sync methods run on the loop too).

Results from pool and loop threads are queued and flushed by that thread.
``exit_actor()`` ends the call with ``TaskFinished{actor_exit}``, flushes and
exits the process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
import threading
import time
import traceback

import cloudpickle

from ember import exceptions
from ember._private import cpu_threads, ids, serialization, state, wire
from ember._private.actor import ActorExit, exit_actor
from ember._private.flush_timer import FlushTimer
from ember._private.runtime import CoreRuntime, current_call
from ember.v1 import common_pb2

_FLUSH_AFTER_S = 0.001
logger = logging.getLogger("ember")
_ERROR = common_pb2.ERROR


class _FunctionLoadError(Exception):
    """The task's function could not be loaded (the message holds the traceback)."""


class Worker:
    """Runs tasks for one connection (the process's runtime)."""

    def __init__(self, rt: CoreRuntime):
        self.rt = rt
        # function_id -> callable
        self.functions: dict[bytes, object] = {}
        self.paths_added: set[str] = set()
        # True while user code of a task runs: SIGINT then raises KeyboardInterrupt.
        self.running = False
        # Ids of tasks the node cancelled (from its cancel file): one still queued here is
        # answered cancelled instead of run.
        self.cancelled: set[bytes] = set()
        # Actor state: the instance, or the encoded ERROR value of a failed
        # constructor; how method calls are dispatched (None: inline).
        self.actor = None
        self.actor_error: bytes | None = None
        self.dispatch = None
        self._pools: dict[str, object] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._group_sizes: dict[str, int] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        # An async actor's running calls by task id (to cancel them).
        self._async_calls: dict[bytes, asyncio.Task] = {}
        # OMP_NUM_THREADS and the math libraries' pools, sized to each task's CPUs.
        self.threads = cpu_threads.Threads()

    def _on_sigint(self, signum, frame):
        # The node names each task it cancels (a line each) in a file before
        # signalling, so a SIGINT meant for a task that just finished never
        # hits the next, and a task cancelled while queued here is never
        # started (see `execute`); several cancels may arrive as one signal.
        targets = None
        session_dir = os.environ.get("EMBER_SESSION_DIR")
        if session_dir:
            try:
                with open(os.path.join(session_dir, "cancel", str(os.getpid()))) as f:
                    targets = {bytes.fromhex(line) for line in f.read().split()}
            except (OSError, ValueError):
                targets = None
        if targets:
            self.cancelled |= targets
            if self._async_calls:
                # An async actor's running calls: their coroutines are cancelled
                # (asyncio's semantics, as in Ray).
                for task_id in targets:
                    call = self._async_calls.get(task_id)
                    if call is not None:
                        self._loop.call_soon_threadsafe(call.cancel)
        if not self.running:
            return
        task = self.rt.current_task
        if task is not None and task.spec.method_name:
            return  # an actor's call is never interrupted: its state would be left half changed
        if targets is None or (task is not None and task.spec.task_id in targets):
            raise KeyboardInterrupt

    def run(self) -> None:
        """Run tasks until the node closes the connection.

        Results of back-to-back tasks are batched: after a task, its result
        is sent at once unless more received tasks wait and the oldest unsent
        result is younger than ``_FLUSH_AFTER_S``. A ``FlushTimer`` sends
        deferred results after that delay even while the next task runs, so
        a quick task's result never waits for a slow task queued behind it;
        it wakes no thread when the batch ends in time.
        """
        rt = self.rt
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)
        timer = FlushTimer(rt.flush, _FLUSH_AFTER_S, "ember-result-flusher",
                           stop_on=(exceptions.LocalRayletDiedError,))
        first_unsent = None
        monotonic = time.monotonic
        while True:
            try:
                task = rt.next_task()
            except exceptions.LocalRayletDiedError:
                return
            if self.dispatch is not None and task.spec.method_name:
                self.dispatch(task)
                continue
            self.execute(task)
            if first_unsent is None:
                first_unsent = monotonic()
            if not rt.exec_queue or monotonic() - first_unsent > _FLUSH_AFTER_S:
                _flush_stdio()
                try:
                    rt.flush()
                except exceptions.LocalRayletDiedError:
                    return
                first_unsent = None
                timer.disarm()
            else:
                timer.arm()

    # -- one task --------------------------------------------------------

    def execute(self, task) -> None:
        """Run one ExecuteTask (a task, an actor's creation or an inline method call) and queue
        its TaskFinished."""
        rt = self.rt
        spec = task.spec
        if self.cancelled and spec.task_id in self.cancelled:
            # Cancelled while it waited here behind another task: never started.
            rt.release_grants(task)
            rt.add_finished(wire.encode_task_finished(spec.task_id, self._cancelled_returns(spec)))
            return
        threads = self.threads
        if threads.managed and not spec.method_name:
            # A task's CPUs, or an actor's for its whole life (its calls hold none).
            cpus = task.assigned_resources.get("CPU", 1.0)
            if cpus >= 2.0 or threads.current != 1:
                threads.set_for_cpus(cpus)
        if task.code_search_path or rt.code_search_path:
            self._add_code_paths(task)
        elif not spec.method_name and not spec.args:
            # The common task, in fewer calls: a function already loaded, no
            # arguments, one return, no GPUs (see `_run_plain`).
            function = self.functions.get(spec.function.function_id)
            if function is not None and spec.num_returns == 1 and not task.gpu_ids \
                    and not spec.cross_language and not spec.HasField("actor_creation"):
                rt.current_task = task
                try:
                    returns, retryable, exiting = self._run_plain(spec, function)
                finally:
                    rt.current_task = None
                rt.add_finished(wire.encode_task_finished(spec.task_id, returns, retryable, exiting))
                if exiting:
                    self._exit_process()
                return
        if spec.HasField("actor_creation"):
            self._create_actor(task)
            return
        if spec.method_name:
            target = self._actor_method
            gpu_ids = ()  # an actor's GPUs are set once, at creation
        else:
            target = self._load_function
            gpu_ids = task.gpu_ids
        old_cuda = None
        if gpu_ids:
            old_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        rt.current_task = task
        try:
            returns, retryable, exiting, _ = self._call(task, target, True)
        finally:
            rt.current_task = None
            if gpu_ids:
                if old_cuda is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = old_cuda
        rt.add_finished(wire.encode_task_finished(spec.task_id, returns, retryable, exiting))
        if exiting:
            self._exit_process()

    def _add_code_paths(self, task) -> None:
        rt = self.rt
        paths = list(task.code_search_path) + rt.code_search_path
        rt.code_search_path.clear()
        for path in paths:
            if path not in self.paths_added:
                self.paths_added.add(path)
                if path not in sys.path:
                    sys.path.append(path)

    def _call(self, task, target, interruptible: bool):
        """Run ``target(task)(*args)``: (returns, retryable, actor exits, failed)."""
        spec = task.spec
        resolved = False
        try:
            function = target(task)
            if type(function) is bytes:  # the actor's constructor failed: its error answers
                return [function] * spec.num_returns, False, False, True
            resolved = True  # from here on, the mappings give the argument grants back
            args, kwargs, error_value = self._resolve_args(spec)
            if error_value is not None:
                return [error_value] * spec.num_returns, False, False, True
            if interruptible:
                self.running = True
                try:
                    result = function(*args, **kwargs)
                finally:
                    self.running = False
            else:
                result = function(*args, **kwargs)
            del args, kwargs
            return self._serialize_returns(spec, result), False, False, False
        except BaseException as exc:  # noqa: BLE001 - user errors are values
            if interruptible:
                self.running = False
            returns, retryable, exiting = self._returns_for(spec, exc)
            return returns, retryable, exiting, not exiting
        finally:
            if not resolved:
                self.rt.release_grants(task)

    def _run_plain(self, spec, function):
        """``_call`` of a loaded function without arguments, one return:
        (returns, retryable, actor exits)."""
        try:
            self.running = True
            try:
                result = function()
            finally:
                self.running = False
            return self._serialize_returns(spec, result), False, False
        except BaseException as exc:  # noqa: BLE001 - user errors are values
            self.running = False
            return self._returns_for(spec, exc)

    def _returns_for(self, spec, exc: BaseException) -> tuple[list[bytes], bool, bool]:
        """The returns of a call that raised ``exc``: (returns, retryable, actor exits)."""
        if isinstance(exc, KeyboardInterrupt):
            return self._cancelled_returns(spec), False, False
        if isinstance(exc, _FunctionLoadError):
            returns = self._error_returns(spec, common_pb2.FUNCTION_LOAD_FAILED, "FunctionLoadError",
                                          str(exc), str(exc), b"")
            return returns, False, False
        if isinstance(exc, ActorExit):
            return self._none_returns(spec), False, True
        returns, retryable = self._exception_returns(spec, exc)
        return returns, retryable, False

    # -- actors ------------------------------------------------------------

    def _create_actor(self, task) -> None:
        """Run the actor's constructor; keep the instance and choose how calls run."""
        rt = self.rt
        spec = task.spec
        creation = spec.actor_creation
        rt.actor_id = creation.actor_id or spec.actor_id
        rt.actor_task = task
        if task.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(task.gpu_ids)
        rt.current_task = task
        try:
            returns, retryable, exiting, failed = self._call(task, self._constructor, True)
        finally:
            rt.current_task = None
        if failed and not exiting:
            self.actor_error = returns[0] if returns else None
        elif not exiting:
            self._start_dispatch(creation)
        rt.add_finished(wire.encode_task_finished(spec.task_id, returns, retryable, exiting))
        if exiting:
            self._exit_process()

    def _constructor(self, task):
        from ember._private.actor import ActorClass

        cls = self._load_function(task)
        if isinstance(cls, ActorClass):
            cls = cls._cls

        def construct(*args, **kwargs):
            self.actor = cls(*args, **kwargs)

        return construct

    def _actor_method(self, task):
        """The bound method a call names (or the constructor's error value)."""
        name = task.spec.method_name
        if self.actor_error is not None:
            return self.actor_error
        if name == "__ray_ready__":
            return _ready
        if name == "__ray_terminate__":
            return exit_actor
        if self.actor is None:
            raise exceptions.RaySystemError(f"this worker runs no actor (method {name} called)")
        return getattr(self.actor, name)

    def _start_dispatch(self, creation) -> None:
        is_async = creation.is_async
        max_concurrency = creation.max_concurrency or (1000 if is_async else 1)
        groups = dict(creation.concurrency_groups)
        if is_async:
            self._group_sizes = {"": max_concurrency, **groups}
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run_loop():
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run_loop, name="ember-actor-loop", daemon=True).start()
            started.wait()
            self._loop = loop
            self.dispatch = self._dispatch_async
        elif max_concurrency > 1 or groups:
            from concurrent.futures import ThreadPoolExecutor

            self._pools = {"": ThreadPoolExecutor(max_concurrency, thread_name_prefix="ember-actor")}
            for group, size in groups.items():
                self._pools[group] = ThreadPoolExecutor(size, thread_name_prefix=f"ember-actor-{group}")
            self.dispatch = self._dispatch_thread

    def _dispatch_thread(self, task) -> None:
        pools = self._pools
        pool = pools.get(task.spec.concurrency_group) or pools[""]
        pool.submit(self._run_threaded, task)

    def _run_threaded(self, task) -> None:
        if self.cancelled and task.spec.task_id in self.cancelled:
            self._answer_cancelled(task)
            return
        token = current_call.set(task)
        try:
            returns, retryable, exiting, _ = self._call(task, self._actor_method, False)
        finally:
            current_call.reset(token)
        self._send_finished(task.spec.task_id, returns, retryable, exiting)

    def _dispatch_async(self, task) -> None:
        asyncio.run_coroutine_threadsafe(self._run_async(task), self._loop)

    async def _run_async(self, task) -> None:
        spec = task.spec
        group = spec.concurrency_group if spec.concurrency_group in self._group_sizes else ""
        semaphore = self._semaphores.get(group)
        if semaphore is None:
            semaphore = self._semaphores[group] = asyncio.Semaphore(self._group_sizes[group])
        async with semaphore:
            if self.cancelled and spec.task_id in self.cancelled:
                self._answer_cancelled(task)
                return
            current_call.set(task)  # this asyncio task's own context
            retryable = exiting = resolved = False
            self._async_calls[spec.task_id] = asyncio.current_task()
            try:
                function = self._actor_method(task)
                if type(function) is bytes:
                    returns = [function] * spec.num_returns
                else:
                    resolved = True
                    args, kwargs, error_value = self._resolve_args(spec)
                    if error_value is not None:
                        returns = [error_value] * spec.num_returns
                    else:
                        result = function(*args, **kwargs)
                        del args, kwargs
                        if inspect.isawaitable(result):
                            result = await result
                        returns = self._serialize_returns(spec, result)
            except ActorExit:
                returns, exiting = self._none_returns(spec), True
            except asyncio.CancelledError as exc:
                if spec.task_id in self.cancelled:
                    returns = self._cancelled_returns(spec)
                else:
                    returns, retryable = self._exception_returns(spec, exc)
            except BaseException as exc:  # noqa: BLE001 - user errors are values
                returns, retryable = self._exception_returns(spec, exc)
            finally:
                self._async_calls.pop(spec.task_id, None)
                if not resolved:
                    self.rt.release_grants(task)
        self._send_finished(spec.task_id, returns, retryable, exiting)

    def _answer_cancelled(self, task) -> None:
        """From a pool or loop thread: a call cancelled before it started never runs."""
        self.rt.release_grants(task)
        self._send_finished(task.spec.task_id, self._cancelled_returns(task.spec), False, False)

    def _send_finished(self, task_id: bytes, returns, retryable: bool, exiting: bool) -> None:
        """From a pool or loop thread: queue a call's result and send it now."""
        rt = self.rt
        rt.add_finished(wire.encode_task_finished(task_id, returns, retryable, exiting))
        if exiting:
            self._exit_process()
        try:
            rt.flush()
        except exceptions.LocalRayletDiedError:
            pass  # the node is gone; the main loop ends too
        except Exception:
            logger.debug("sending an actor call's result failed", exc_info=True)

    def _exit_process(self) -> None:
        """exit_actor(): send what is pending (the exiting call's result first) and exit."""
        _flush_stdio()
        try:
            self.rt.flush()
        except BaseException:  # exiting regardless
            logger.debug("flushing before exit_actor failed", exc_info=True)
        os._exit(0)

    def _none_returns(self, spec) -> list[bytes]:
        ser = serialization.serialize(None)
        value = wire.encode_value(ser.format, ser.metadata, ser.to_bytes())
        return [value] * spec.num_returns

    def _load_function(self, task):
        fid = task.spec.function.function_id
        function = self.functions.get(fid)
        if function is not None:
            return function
        payload = task.function_payload or self.rt.function_payloads.get(fid)
        if not payload:
            raise _FunctionLoadError(
                f"the node sent no code for function {task.spec.function.name} ({fid.hex()})")
        try:
            function = cloudpickle.loads(payload)
        except BaseException as exc:
            raise _FunctionLoadError(
                f"failed to load function {task.spec.function.name}:\n{traceback.format_exc()}") from exc
        self.functions[fid] = function
        self.rt.function_payloads.pop(fid, None)
        return function

    def _resolve_args(self, spec):
        """Positional and keyword arguments; or the ERROR value of a failed argument."""
        spec_args = spec.args
        if not spec_args:
            return (), {}, None
        rt = self.rt
        args = []
        kwargs = {}
        deserialize = serialization.deserialize
        # Map every shared-memory argument first: each location is a grant the
        # mapping gives back when it goes, whatever happens next.
        views = [rt.map_object(arg.object_ref, arg.value.shm)
                 if arg.object_ref and arg.value.WhichOneof("body") == "shm" else None
                 for arg in spec_args]
        for arg, view in zip(spec_args, views):
            value = arg.value
            if value.format == _ERROR:
                return None, None, _value_bytes(value)
            data = value.inline_data if view is None else view
            obj = deserialize(value.format, value.metadata, data)
            if arg.keyword:
                kwargs[arg.keyword] = obj
            else:
                args.append(obj)
        return args, kwargs, None

    def _serialize_returns(self, spec, result) -> list[bytes]:
        n = spec.num_returns
        if n == 1:
            if not spec.cross_language:
                value = self.rt.plain_inline_value(result)
                if value is not None:
                    return [value]
            values = (result,)
        elif n == 0:
            values = ()
        else:
            try:
                count = len(result)
            except TypeError:
                count = None
            if count != n:
                raise ValueError(
                    f"Task returned {'a non-sequence' if count is None else f'{count} objects'}, "
                    f"but num_returns={n}.")
            values = result
        rt = self.rt
        limit = rt.max_inline_bytes
        out = []
        created = []
        try:
            encode = serialization.serialize_msgpack if spec.cross_language else serialization.serialize
            for i, value in enumerate(values):
                ser = encode(value)
                if ser.size <= limit:
                    out.append(wire.encode_value(ser.format, ser.metadata, ser.to_bytes(), None,
                                                 ser.contained_refs))
                else:
                    oid = ids.return_object_id(spec.task_id, i)
                    loc = rt.write_shm(oid, ser)
                    created.append(oid)
                    out.append(wire.encode_value(ser.format, ser.metadata, None, loc, ser.contained_refs))
        except BaseException:
            if created:
                from ember._private.runtime import _op
                from ember.v1 import local_pb2

                rt.send([_op(abort_object=local_pb2.AbortObject(object_id=oid)) for oid in created])
            raise
        return out

    def _exception_returns(self, spec, exc: BaseException) -> tuple[list[bytes], bool]:
        tb = exc.__traceback__
        # Drop this module's frames from the top of the traceback.
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        try:
            payload = cloudpickle.dumps(exc, protocol=5)
        except Exception:  # noqa: BLE001 - an unpicklable exception travels as text only
            payload = b""
        allow = spec.retry_exception_allowlist
        retryable = bool(spec.retry_exceptions) and (
            not allow or any(cls.__name__ in allow for cls in type(exc).__mro__))
        return self._error_returns(spec, common_pb2.TASK_FAILED, type(exc).__name__, str(exc), text, payload), retryable

    def _cancelled_returns(self, spec) -> list[bytes]:
        return self._error_returns(spec, common_pb2.TASK_CANCELLED, "TaskCancelledError",
                                   f"task {spec.task_id.hex()} was cancelled", "", b"")

    def _error_returns(self, spec, kind, type_name, message, text, payload) -> list[bytes]:
        err = common_pb2.TaskError(
            kind=kind, type_name=type_name, message=message, traceback=text,
            language=common_pb2.PYTHON, payload=payload, task_id=spec.task_id,
            function_name=spec.function.name or spec.name)
        value = wire.encode_value(_ERROR, b"", err.SerializeToString())
        return [value] * spec.num_returns


def _ready() -> bool:
    return True


def _value_bytes(value: common_pb2.ObjectValue) -> bytes:
    return value.SerializeToString()


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream: nothing to flush to


def main(worker_id_hex: str | None = None) -> None:
    """Connect to the node as a worker and run tasks until it closes the connection."""
    socket_path = os.environ["EMBER_NODE_SOCKET"]
    token = os.environ.get("EMBER_TOKEN", "")
    worker_id = bytes.fromhex(worker_id_hex or os.environ.get("EMBER_WORKER_ID", ""))
    rt = CoreRuntime(socket_path, token, is_worker=True, worker_id=worker_id)
    state.runtime = rt
    try:
        Worker(rt).run()
    finally:
        state.runtime = None
        _flush_stdio()
        rt.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
