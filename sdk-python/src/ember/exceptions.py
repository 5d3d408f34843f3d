"""Exceptions raised by ember, with Ray's names (``ray.exceptions.X``).

Tree::

    RayError
    ├── RayTaskError            the user's function raised (get re-raises it)
    ├── GetTimeoutError         (also a TimeoutError)
    ├── WorkerCrashedError
    ├── TaskCancelledError
    ├── ObjectLostError
    ├── ObjectStoreFullError
    ├── OutOfMemoryError
    ├── RaySystemError
    ├── TaskUnschedulableError
    ├── NodeDiedError
    ├── LocalRayletDiedError
    ├── RuntimeEnvSetupError
    ├── CrossLanguageError
    ├── RayActorError
    │   ├── ActorDiedError      the actor is dead (killed, crashed, exited)
    │   └── ActorUnavailableError
    ├── ActorUnschedulableError
    ├── UnknownFunctionError    (ember)
    └── AuthenticationError     (ember)

``exception_for_error`` turns a wire ``TaskError`` into the exception to raise;
``ERROR_KIND_TO_EXCEPTION`` is the one table from ``ErrorKind`` to class.
"""

from __future__ import annotations

import pickle

from ember.v1 import common_pb2

__all__ = [
    "ActorDiedError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AuthenticationError",
    "CrossLanguageError",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "TaskUnschedulableError",
    "UnknownFunctionError",
    "WorkerCrashedError",
]


class RayError(Exception):
    """Base class of every ember exception."""


class RayTaskError(RayError):
    """The user's function raised an exception in a task.

    ``ember.get`` raises ``as_instanceof_cause()`` of it: an exception that is
    both a ``RayTaskError`` and an instance of the original exception's type,
    so ``except ValueError`` catches a remote ``ValueError``.
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        proctitle: str = "",
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
    ):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle
        self.pid = pid
        self.ip = ip
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        super().__init__(self._message())

    def _message(self) -> str:
        name = self.function_name or "task"
        header = f"{type(self.cause).__name__ if self.cause else 'RayTaskError'}"
        where = f" (pid={self.pid}, ip={self.ip})" if self.pid is not None else ""
        out = f"{header}: ray::{name}(){where}"
        if self.traceback_str:
            out += "\n" + self.traceback_str.rstrip("\n")
        return out

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return (
            RayTaskError,
            (self.function_name, self.traceback_str, self.cause, self.proctitle, self.pid,
             self.ip, self.actor_repr, self.actor_id),
        )

    def as_instanceof_cause(self) -> RayTaskError:
        """Return an exception that is an instance of both this class and the cause's type.

        When the cause's type cannot be subclassed (or its constructor misbehaves),
        ``self`` is returned.
        """
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        try:
            cls = _dual_class(cause_cls)
            err = cls.__new__(cls)
        except TypeError:
            return self
        # Initialise the RayTaskError side; keep the cause's args so code that
        # reads e.args sees the original arguments.
        err.__dict__.update(self.__dict__)
        try:
            err.args = cause.args
        except (AttributeError, TypeError):
            pass
        return err


_DUAL_CLASSES: dict[type, type] = {}


def _dual_class(cause_cls: type) -> type:
    cls = _DUAL_CLASSES.get(cause_cls)
    if cls is None:

        def __str__(self):
            return RayTaskError._message(self)

        def __reduce__(self):
            return RayTaskError.__reduce__(self)

        cls = type(
            f"RayTaskError({cause_cls.__name__})",
            (RayTaskError, cause_cls),
            {"__str__": __str__, "__reduce__": __reduce__, "__init__": RayTaskError.__init__},
        )
        cls.__module__ = "ember.exceptions"
        _DUAL_CLASSES[cause_cls] = cls
    return cls


class GetTimeoutError(RayError, TimeoutError):
    """``get`` (or ``wait``) gave up after its timeout."""


class WorkerCrashedError(RayError):
    """The worker process died while running the task and no retry was left."""


class TaskCancelledError(RayError):
    """The task was cancelled with ``ember.cancel``."""

    def __init__(self, task_id=None, message: str = ""):
        self.task_id = task_id
        super().__init__(message or (f"task {task_id} was cancelled" if task_id else "task was cancelled"))


class ObjectLostError(RayError):
    """The object's value is gone and cannot be rebuilt."""


class ObjectStoreFullError(RayError):
    """The object store could not make room for an object."""


class OutOfMemoryError(RayError):
    """A task was killed because its node ran out of memory."""


class RaySystemError(RayError):
    """ember itself failed (an internal error, a malformed request)."""


class TaskUnschedulableError(RayError):
    """No node can ever run the task."""


class NodeDiedError(RayError):
    """The node the work ran on died."""


class LocalRayletDiedError(RayError):
    """The local node daemon closed the connection."""


class RuntimeEnvSetupError(RayError):
    """The runtime environment of a task or job could not be set up."""


class CrossLanguageError(RayError):
    """A task in another language failed."""


class RayActorError(RayError):
    """An actor method could not run because of the actor (it died or cannot be reached)."""

    def __init__(self, error_msg: str = "The actor died unexpectedly before finishing this task.",
                 actor_id: str | None = None):
        self.error_msg = error_msg
        self.actor_id = actor_id
        super().__init__(error_msg)

    def __str__(self) -> str:
        return self.error_msg


class ActorDiedError(RayActorError):
    """The actor is dead and will not be restarted (killed, crashed past its restarts,
    exited, or its owner died); the message says why."""

    BASE_ERROR_MSG = "The actor died unexpectedly before finishing this task."

    def __init__(self, error_msg: str = BASE_ERROR_MSG, actor_id: str | None = None):
        super().__init__(error_msg, actor_id)
        self.base_error_msg = error_msg


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unreachable (restarting); the call may be retried."""


class ActorUnschedulableError(RayError):
    """No node can ever place the actor."""


class UnknownFunctionError(RayError):
    """No function is registered under the task's function descriptor."""


class AuthenticationError(RayError):
    """The cluster token was missing or wrong."""


_K = common_pb2.ErrorKind

#: The one table from the wire's ErrorKind to the exception raised.
ERROR_KIND_TO_EXCEPTION: dict[int, type[RayError]] = {
    _K.ERROR_KIND_UNSPECIFIED: RaySystemError,
    _K.TASK_FAILED: RayTaskError,
    _K.WORKER_CRASHED: WorkerCrashedError,
    _K.TASK_CANCELLED: TaskCancelledError,
    _K.OBJECT_LOST: ObjectLostError,
    _K.UNKNOWN_FUNCTION: UnknownFunctionError,
    _K.INVALID_ARGUMENT: RaySystemError,
    _K.OBJECT_STORE_FULL: ObjectStoreFullError,
    _K.FUNCTION_LOAD_FAILED: RaySystemError,
    _K.WORKER_START_FAILED: RaySystemError,
    _K.INTERNAL: RaySystemError,
    _K.UNAUTHENTICATED: AuthenticationError,
    _K.GET_TIMEOUT: GetTimeoutError,
    _K.ACTOR_DIED: ActorDiedError,
    # NOT_FOUND and ALREADY_EXISTS answer get_actor / named actor creation,
    # which raise ValueError themselves (like Ray); as a stored value they
    # would be a system error.
    _K.NOT_FOUND: RaySystemError,
    _K.ALREADY_EXISTS: RaySystemError,
    _K.NODE_DIED: NodeDiedError,
}


def exception_for_error(err: common_pb2.TaskError) -> BaseException:
    """The exception to raise for a wire ``TaskError``.

    A ``TASK_FAILED`` error from Python with a pickled exception becomes
    ``RayTaskError(...).as_instanceof_cause()``; other kinds map through
    ``ERROR_KIND_TO_EXCEPTION`` with the error's message.
    """
    kind = err.kind
    if kind == _K.TASK_FAILED:
        cause = None
        if err.payload and err.language == common_pb2.PYTHON:
            try:
                cause = pickle.loads(err.payload)
            except Exception:  # noqa: BLE001 - an exception class missing here
                cause = None
        # A task that failed because a nested task failed: keep the innermost cause's type.
        while isinstance(cause, RayTaskError) and cause.cause is not None:
            cause = cause.cause
        if not isinstance(cause, BaseException):
            cause = CrossLanguageError(f"{err.type_name}: {err.message}") if (
                err.language not in (common_pb2.PYTHON, common_pb2.LANGUAGE_UNSPECIFIED)
            ) else _UnpicklableCause(err.type_name, err.message)
        traceback_str = err.traceback or f"{err.type_name}: {err.message}"
        task_err = RayTaskError(err.function_name, traceback_str, cause)
        if isinstance(cause, _UnpicklableCause):
            return task_err
        return task_err.as_instanceof_cause()
    cls = ERROR_KIND_TO_EXCEPTION.get(kind, RaySystemError)
    message = err.message or common_pb2.ErrorKind.Name(kind).lower()
    if err.traceback:
        message = f"{message}\n{err.traceback}"
    if cls is TaskCancelledError:
        return TaskCancelledError(err.task_id.hex() if err.task_id else None, message)
    return cls(message)


class _UnpicklableCause(Exception):
    """Stands for a remote exception whose pickled form could not be loaded here."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
