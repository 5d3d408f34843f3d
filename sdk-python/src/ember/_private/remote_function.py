"""``RemoteFunction``: what ``@ember.remote`` makes of a function.

``f.remote(*args)`` submits a task and returns its ObjectRef(s) at once. The
function is pickled once (on the first call, so globals defined after the
decorator are seen), named by ``sha256(payload)[:20]`` and registered with the
node before its first task in each runtime. Everything about the task that
does not change between calls (function, resources, retries, returns) is
encoded once into ``static_spec``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading

import cloudpickle

from ember._private import state
from ember.v1 import common_pb2, local_pb2

logger = logging.getLogger("ember")

DEFAULT_OPTIONS = {
    "num_cpus": 1,
    "num_gpus": 0,
    "resources": None,
    "memory": None,
    "max_retries": 3,
    "retry_exceptions": False,
    "num_returns": 1,
    "name": None,
    "scheduling_strategy": None,
}

# Ray options accepted and ignored for now (they do not change what runs).
IGNORED_OPTIONS = frozenset({
    "object_store_memory", "accelerator_type", "max_calls", "runtime_env", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "label_selector",
    "_metadata", "enable_task_events", "_labels", "fallback_strategy",
})


def check_resource_options(merged: dict) -> None:
    """Check num_cpus, num_gpus, memory and resources like Ray does (tasks and actors)."""
    for key in ("num_cpus", "num_gpus", "memory"):
        value = merged[key]
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise TypeError(f"The keyword '{key}' only accepts a number, got {value!r}")
        if value < 0:
            raise ValueError(f"The keyword '{key}' only accepts a non-negative number, got {value}")
    resources = merged["resources"]
    if resources is not None:
        if not isinstance(resources, dict):
            raise TypeError(f"The keyword 'resources' only accepts a dict, got {resources!r}")
        if "CPU" in resources or "GPU" in resources:
            raise ValueError("Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in "
                             "'resources' keyword")
        for name, amount in resources.items():
            if not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"resource {name!r} must be a non-negative number, got {amount!r}")


def validate_options(options: dict) -> dict:
    """Check task options like Ray does; return the complete option dict."""
    merged = dict(DEFAULT_OPTIONS)
    for key, value in options.items():
        if key in DEFAULT_OPTIONS:
            merged[key] = value
        elif key in IGNORED_OPTIONS:
            logger.debug("ember ignores the task option %s=%r", key, value)
        else:
            raise ValueError(f"Invalid option keyword {key} for remote functions. ")
    check_resource_options(merged)
    num_returns = merged["num_returns"]
    if num_returns in ("dynamic", "streaming"):
        raise NotImplementedError(f"num_returns={num_returns!r} is not supported yet")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, got {num_returns!r}")
    max_retries = merged["max_retries"]
    if not isinstance(max_retries, int) or max_retries < -1:
        raise ValueError(f"max_retries must be an integer >= -1, got {max_retries!r}")
    retry = merged["retry_exceptions"]
    if not isinstance(retry, bool) and (
        not isinstance(retry, (list, tuple))
        or not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry)
    ):
        raise TypeError("retry_exceptions must be a bool or a list of exception types")
    return merged


def task_resources(options: dict) -> dict[str, float]:
    """The resource map of a task: CPU (omitted when 0), GPU, memory, custom names."""
    out: dict[str, float] = {}
    if options["num_cpus"]:
        out["CPU"] = float(options["num_cpus"])
    if options["num_gpus"]:
        out["GPU"] = float(options["num_gpus"])
    if options["memory"]:
        out["memory"] = float(options["memory"])
    for name, amount in (options["resources"] or {}).items():
        if amount:
            out[name] = float(amount)
    return out


class FunctionHandle:
    """The pickled function, shared by a RemoteFunction and its ``.options()`` copies."""

    def __init__(self, function):
        self.function = function
        self.name = f"{function.__module__}.{function.__qualname__}"
        self._lock = threading.Lock()
        self.function_id: bytes | None = None
        self.payload: bytes | None = None
        # The encoded RegisterFunction op.
        self.register_op: bytes | None = None
        self.descriptor: common_pb2.FunctionDescriptor | None = None

    def ensure_pickled(self) -> None:
        """Pickle the function (once)."""
        if self.function_id is not None:
            return
        with self._lock:
            if self.function_id is not None:
                return
            payload = cloudpickle.dumps(self.function, protocol=5)
            function_id = hashlib.sha256(payload).digest()[:20]
            descriptor = common_pb2.FunctionDescriptor(
                language=common_pb2.PYTHON, function_id=function_id, name=self.name)
            self.payload = payload
            self.descriptor = descriptor
            self.register_op = local_pb2.ClientOp(
                register_function=local_pb2.RegisterFunction(function=descriptor, payload=payload)
            ).SerializeToString()
            self.function_id = function_id


class RemoteFunction:
    """A function made remote with ``@ember.remote``: call it with ``.remote()``."""

    def __init__(self, function, options: dict | None = None, _handle: FunctionHandle | None = None):
        self._function = function
        self._options = validate_options(options or {})
        self._handle = _handle or FunctionHandle(function)
        self._num_returns = self._options["num_returns"]
        self._static_spec: bytes | None = None
        self.__name__ = getattr(function, "__name__", "remote_function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__module__ = getattr(function, "__module__", None)
        self.__doc__ = getattr(function, "__doc__", None)
        self.__wrapped__ = function

    def __call__(self, *args, **kwargs):
        raise TypeError(
            "Remote functions cannot be called directly. Instead "
            f"of running '{self.__name__}()', try '{self.__name__}.remote()'."
        )

    def __reduce__(self):
        return (RemoteFunction, (self._function, self._user_options()))

    def _user_options(self) -> dict:
        return {k: v for k, v in self._options.items() if DEFAULT_OPTIONS.get(k, object()) != v}

    def options(self, **options) -> RemoteFunction:
        """A copy of this remote function with some options changed (the pickled function is shared)."""
        merged = dict(self._user_options())
        merged.update(options)
        return RemoteFunction(self._function, merged, _handle=self._handle)

    def _build_static_spec(self) -> bytes:
        handle = self._handle
        handle.ensure_pickled()
        opts = self._options
        retry = opts["retry_exceptions"]
        allowlist = []
        if not isinstance(retry, bool):
            allowlist = [t.__name__ for t in retry]
            retry = True
        spec = common_pb2.TaskSpec(
            function=handle.descriptor,
            num_returns=opts["num_returns"],
            resources=task_resources(opts),
            max_retries=opts["max_retries"],
            retry_exceptions=retry,
            name=opts["name"] or self.__qualname__,
            retry_exception_allowlist=allowlist,
        )
        from ember.util import scheduling_strategies

        strategy = scheduling_strategies.to_proto(opts["scheduling_strategy"])
        if strategy is not None:
            spec.scheduling_strategy.CopyFrom(strategy)
        self._static_spec = spec.SerializeToString()
        return self._static_spec

    def remote(self, *args, **kwargs):
        """Submit a task; return its ObjectRef (a list for num_returns > 1, None for 0)."""
        rt = state.runtime
        if rt is None:
            from ember._private.api import auto_init

            rt = auto_init()
        static = self._static_spec or self._build_static_spec()
        if not args and not kwargs and self._num_returns == 1:
            ref = rt.submit_no_args(self._handle, static)
            if ref is not None:
                return ref
        refs = rt.submit_task(self._handle, static, self._num_returns, args, kwargs)
        if self._num_returns == 1:
            return refs[0]
        if self._num_returns == 0:
            return None
        return refs

    def bind(self, *args, **kwargs):
        raise NotImplementedError("ember does not support Ray DAGs (.bind) yet")
