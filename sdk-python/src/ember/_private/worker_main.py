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
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback

import cloudpickle

from ember import exceptions
from ember._private import ids, serialization, state, wire
from ember._private.runtime import CoreRuntime
from ember.v1 import common_pb2

_FLUSH_AFTER_S = 0.001
logger = logging.getLogger("ember")
_PICKLE = common_pb2.PICKLE
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

    def _on_sigint(self, signum, frame):
        if not self.running:
            return
        # The node names the task it cancels in a file before signalling, so
        # a SIGINT meant for a task that just finished never hits the next.
        target = None
        session_dir = os.environ.get("EMBER_SESSION_DIR")
        if session_dir:
            try:
                with open(os.path.join(session_dir, "cancel", str(os.getpid()))) as f:
                    target = f.read().strip()
            except OSError:
                target = None
        task = self.rt.current_task
        if target is None or (task is not None and target == task.spec.task_id.hex()):
            raise KeyboardInterrupt

    def run(self) -> None:
        """Run tasks until the node closes the connection.

        Results of back-to-back tasks are batched: after a task, its result
        is sent at once unless more received tasks wait and the oldest unsent
        result is younger than ``_FLUSH_AFTER_S``. A flusher thread sends
        deferred results after that delay even while the next task runs, so
        a quick task's result never waits for a slow task queued behind it.
        """
        rt = self.rt
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)
        deferred = threading.Event()
        threading.Thread(target=self._flush_deferred, args=(deferred,), name="ember-result-flusher",
                         daemon=True).start()
        first_unsent = None
        monotonic = time.monotonic
        while True:
            try:
                task = rt.next_task()
            except exceptions.LocalRayletDiedError:
                return
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
            else:
                deferred.set()

    def _flush_deferred(self, deferred: threading.Event) -> None:
        """Send results the main loop deferred, ``_FLUSH_AFTER_S`` later."""
        while True:
            deferred.wait()
            time.sleep(_FLUSH_AFTER_S)
            deferred.clear()
            try:
                self.rt.flush()
            except exceptions.LocalRayletDiedError:
                return
            except Exception:
                logger.debug("deferred flush failed", exc_info=True)

    # -- one task --------------------------------------------------------

    def execute(self, task) -> None:
        """Run one ExecuteTask and queue its TaskFinished."""
        rt = self.rt
        spec = task.spec
        if task.code_search_path or rt.code_search_path:
            paths = list(task.code_search_path) + rt.code_search_path
            rt.code_search_path.clear()
            for path in paths:
                if path not in self.paths_added:
                    self.paths_added.add(path)
                    if path not in sys.path:
                        sys.path.append(path)
        old_cuda = None
        if task.gpu_ids:
            old_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(task.gpu_ids)
        rt.current_task = task
        retryable = False
        try:
            try:
                function = self._load_function(task)
                error_value = None
                args, kwargs, error_value = self._resolve_args(spec)
                if error_value is None:
                    self.running = True
                    try:
                        result = function(*args, **kwargs)
                    finally:
                        self.running = False
                    del args, kwargs
                    returns = self._serialize_returns(spec, result)
                    del result
                else:
                    returns = [error_value] * spec.num_returns
            except KeyboardInterrupt:
                self.running = False
                returns = self._error_returns(spec, common_pb2.TASK_CANCELLED, "TaskCancelledError",
                                              f"task {spec.task_id.hex()} was cancelled", "", b"")
            except _FunctionLoadError as exc:
                returns = self._error_returns(spec, common_pb2.FUNCTION_LOAD_FAILED, "FunctionLoadError",
                                              str(exc), str(exc), b"")
            except BaseException as exc:  # noqa: BLE001 - user errors are values
                self.running = False
                returns, retryable = self._exception_returns(spec, exc)
        finally:
            rt.current_task = None
            if task.gpu_ids:
                if old_cuda is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = old_cuda
        rt.add_finished(wire.encode_task_finished(spec.task_id, returns, retryable))

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
        rt = self.rt
        args = []
        kwargs = {}
        deserialize = serialization.deserialize
        for arg in spec.args:
            value = arg.value
            if value.format == _ERROR:
                return None, None, _value_bytes(value)
            if arg.object_ref and value.WhichOneof("body") == "shm":
                data = rt.map_object(arg.object_ref, value.shm.offset, value.shm.size)
            else:
                data = value.inline_data
            obj = deserialize(value.format, value.metadata, data)
            if arg.keyword:
                kwargs[arg.keyword] = obj
            else:
                args.append(obj)
        return args, kwargs, None

    def _serialize_returns(self, spec, result) -> list[bytes]:
        n = spec.num_returns
        if n == 1:
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
            for i, value in enumerate(values):
                ser = serialization.serialize(value)
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

    def _error_returns(self, spec, kind, type_name, message, text, payload) -> list[bytes]:
        err = common_pb2.TaskError(
            kind=kind, type_name=type_name, message=message, traceback=text,
            language=common_pb2.PYTHON, payload=payload, task_id=spec.task_id,
            function_name=spec.function.name or spec.name)
        value = wire.encode_value(_ERROR, b"", err.SerializeToString())
        return [value] * spec.num_returns


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
