"""Actors: ``@ember.remote`` on a class makes an ``ActorClass``.

``Cls.remote(*args)`` sends ``CreateActor`` (the class is pickled and
registered like a remote function) and returns an ``ActorHandle`` at once for
an anonymous actor; a named actor waits for the node's ``ActorReply``.
``handle.method.remote(*args)`` is a ``SubmitTask`` whose spec names the actor
and the method: the static part of that spec is encoded once per handle and
method, like a remote function's. A handle pickles to the actor's id, class
descriptor and method table, so it works in any process (the receiving
process submits over its own connection).

Resources follow Ray: an actor that names ``num_cpus`` is placed with and
holds that many CPUs; one that does not is placed with 1 CPU and holds none.
GPUs, ``memory`` and custom resources are both placement and held resources.
"""

from __future__ import annotations

import inspect
import logging
import os

from ember._private import state
from ember._private.remote_function import FunctionHandle, check_resource_options
from ember.v1 import common_pb2

logger = logging.getLogger("ember")

DEFAULT_ACTOR_OPTIONS = {
    "num_cpus": None,
    "num_gpus": None,
    "resources": None,
    "memory": None,
    "max_restarts": 0,
    "max_task_retries": 0,
    "max_concurrency": None,
    "name": None,
    "namespace": None,
    "lifetime": None,
    "get_if_exists": False,
    "concurrency_groups": None,
    # Accepted and ignored (they do not change what runs here).
    "scheduling_strategy": None,
    "runtime_env": None,
}

IGNORED_ACTOR_OPTIONS = frozenset({
    "object_store_memory", "accelerator_type", "max_pending_calls", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "_metadata",
    "enable_task_events", "label_selector", "allow_out_of_order_execution", "_labels",
    "fallback_strategy",
})

METHOD_OPTIONS = frozenset({"num_returns", "concurrency_group", "max_task_retries",
                            "retry_exceptions", "name"})
IGNORED_METHOD_OPTIONS = frozenset({"_generator_backpressure_num_objects", "enable_task_events",
                                    "tensor_transport", "_metadata"})

# Methods every actor answers (run by the worker itself).
BUILTIN_METHODS = {"__ray_ready__": (1, ""), "__ray_terminate__": (1, "")}


class ActorID:
    """An actor's id: ``hex()`` and ``binary()`` like Ray's ``ActorID``."""

    __slots__ = ("_id",)

    def __init__(self, actor_id: bytes):
        self._id = actor_id

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def is_nil(self) -> bool:
        return not any(self._id)

    def __eq__(self, other):
        return isinstance(other, ActorID) and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __repr__(self):
        return f"ActorID({self._id.hex()})"

    def __reduce__(self):
        return (ActorID, (self._id,))


def _check_int(options: dict, key: str, low: int) -> None:
    value = options[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"The keyword '{key}' only accepts an integer >= {low}, got {value!r}")


def validate_actor_options(options: dict) -> dict:
    """Check actor options like Ray does; return the complete option dict."""
    merged = dict(DEFAULT_ACTOR_OPTIONS)
    for key, value in options.items():
        if key in DEFAULT_ACTOR_OPTIONS:
            merged[key] = value
        elif key in IGNORED_ACTOR_OPTIONS:
            logger.debug("ember ignores the actor option %s=%r", key, value)
        else:
            raise ValueError(f"Invalid option keyword {key} for actors.")
    check_resource_options(merged)
    _check_int(merged, "max_restarts", -1)
    _check_int(merged, "max_task_retries", -1)
    if merged["max_concurrency"] is not None:
        value = merged["max_concurrency"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"max_concurrency must be an integer, got {value!r}")
        if value < 1:
            raise ValueError("max_concurrency must be >= 1")
    name = merged["name"]
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be None or a string, got: '{type(name)}'.")
        if name == "":
            raise ValueError("Actor name cannot be an empty string.")
    namespace = merged["namespace"]
    if namespace is not None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be None or a string, got: '{type(namespace)}'.")
        if namespace == "":
            raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    if merged["lifetime"] not in (None, "detached", "non_detached"):
        raise ValueError("actor `lifetime` argument must be one of 'detached', 'non_detached' "
                         "and 'None'.")
    if merged["get_if_exists"] and not name:
        raise ValueError("The actor name must be specified to use `get_if_exists`.")
    groups = merged["concurrency_groups"]
    if groups is not None:
        if not isinstance(groups, dict):
            raise TypeError("concurrency_groups must be a dict of group name -> max concurrency")
        for group, size in groups.items():
            if not isinstance(group, str) or not group:
                raise ValueError(f"a concurrency group's name must be a non-empty string, "
                                 f"got {group!r}")
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"concurrency group {group!r}: max concurrency must be an "
                                 f"integer >= 1, got {size!r}")
    return merged


def actor_resources(options: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(resources to place the actor, resources it holds while alive)."""
    held: dict[str, float] = {}
    if options["num_gpus"]:
        held["GPU"] = float(options["num_gpus"])
    if options["memory"]:
        held["memory"] = float(options["memory"])
    for name, amount in (options["resources"] or {}).items():
        if amount:
            held[name] = float(amount)
    place = dict(held)
    if options["num_cpus"] is None:
        place["CPU"] = 1.0
    elif options["num_cpus"]:
        place["CPU"] = held["CPU"] = float(options["num_cpus"])
    return place, held


def _check_num_returns(num_returns) -> None:
    if num_returns in ("dynamic", "streaming"):
        raise NotImplementedError(f"num_returns={num_returns!r} is not supported yet")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, got {num_returns!r}")


def method(*args, **kwargs):
    """Annotate an actor method: ``@ember.method(num_returns=2, concurrency_group="io")``."""
    valid = METHOD_OPTIONS | IGNORED_METHOD_OPTIONS
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    if args or not kwargs:
        raise ValueError(
            "The @ray.method decorator must be applied using at least one of the arguments in the "
            f"list {sorted(valid)}, for example '@ray.method(num_returns=2)'.")
    for key in kwargs:
        if key not in valid:
            raise ValueError(f"Invalid option keyword {key} for actor methods.")
    if "num_returns" in kwargs:
        _check_num_returns(kwargs["num_returns"])

    def annotate(fn):
        if "num_returns" in kwargs:
            fn.__ray_num_returns__ = kwargs["num_returns"]
        if "concurrency_group" in kwargs:
            fn.__ray_concurrency_group__ = kwargs["concurrency_group"]
        if "max_task_retries" in kwargs:
            fn.__ray_max_task_retries__ = kwargs["max_task_retries"]
        if "retry_exceptions" in kwargs:
            fn.__ray_retry_exceptions__ = kwargs["retry_exceptions"]
        return fn

    return annotate


class _ClassMeta:
    """What a class offers as an actor: its methods (name -> (num_returns, group)), async-ness."""

    def __init__(self, cls):
        self.class_name = cls.__name__
        self.methods: dict[str, tuple[int, str]] = {}
        # Per-method retry settings from @method (only handles made here know them).
        self.method_retries: dict[str, tuple] = {}
        self.is_async = False
        for name, member in inspect.getmembers(cls):
            if name.startswith("__") and name.endswith("__") and name != "__call__":
                continue
            if isinstance(member, type) or not callable(member):
                continue
            fn = getattr(member, "__func__", member)
            num_returns = getattr(fn, "__ray_num_returns__", 1)
            group = getattr(fn, "__ray_concurrency_group__", "") or ""
            self.methods[name] = (num_returns, group)
            retries = (getattr(fn, "__ray_max_task_retries__", None),
                       getattr(fn, "__ray_retry_exceptions__", None))
            if retries != (None, None):
                self.method_retries[name] = retries
            if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                self.is_async = True

    def method_protos(self) -> list[common_pb2.ActorMethod]:
        return [common_pb2.ActorMethod(name=name, num_returns=n, concurrency_group=group)
                for name, (n, group) in self.methods.items()]


class ActorClass:
    """A class made an actor with ``@ember.remote``: create actors with ``.remote()``."""

    def __init__(self, cls, options: dict | None = None, _handle: FunctionHandle | None = None,
                 _meta: _ClassMeta | None = None):
        self._cls = cls
        self._options = validate_actor_options(options or {})
        self._handle = _handle or FunctionHandle(cls)
        self._meta = _meta or _ClassMeta(cls)
        self._static_spec: bytes | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = getattr(cls, "__qualname__", cls.__name__)
        self.__module__ = getattr(cls, "__module__", None)
        self.__doc__ = getattr(cls, "__doc__", None)
        self.__wrapped__ = cls

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use "
            f"'{self.__name__}.remote()'.")

    def __reduce__(self):
        return (ActorClass, (self._cls, self._user_options()))

    def __repr__(self):
        return f"ActorClass({self.__name__})"

    def _user_options(self) -> dict:
        return {k: v for k, v in self._options.items() if DEFAULT_ACTOR_OPTIONS.get(k, object()) != v}

    def options(self, **options) -> ActorClass:
        """A copy of this actor class with some options changed (the pickled class is shared)."""
        merged = dict(self._user_options())
        merged.update(options)
        return ActorClass(self._cls, merged, _handle=self._handle, _meta=self._meta)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("ember does not support Ray DAGs (.bind) yet")

    def remote(self, *args, **kwargs) -> ActorHandle:
        """Create an actor; return its handle."""
        rt = state.runtime
        if rt is None:
            from ember._private.api import auto_init

            rt = auto_init()
        handle = self._handle
        handle.ensure_pickled()
        opts = self._options
        meta = self._meta
        place, held = actor_resources(opts)
        actor_id = os.urandom(16)
        name = opts["name"] or ""
        creation = common_pb2.ActorCreation(
            actor_id=actor_id,
            name=name,
            namespace=opts["namespace"] or "",
            detached=opts["lifetime"] == "detached",
            max_restarts=opts["max_restarts"],
            max_task_retries=opts["max_task_retries"],
            max_concurrency=opts["max_concurrency"] or 0,
            is_async=meta.is_async,
            concurrency_groups=opts["concurrency_groups"] or {},
            get_if_exists=bool(opts["get_if_exists"]),
            held_resources=held,
            class_name=meta.class_name,
            methods=meta.method_protos(),
        )
        spec = common_pb2.TaskSpec(
            function=handle.descriptor,
            num_returns=1,
            resources=place,
            max_retries=opts["max_restarts"],
            name=f"{meta.class_name}.__init__",
            actor_creation=creation,
        )
        from ember.util import scheduling_strategies

        strategy = scheduling_strategies.to_proto(opts["scheduling_strategy"])
        if strategy is not None:
            spec.scheduling_strategy.CopyFrom(strategy)
        request_id = next(rt._request_ids) if name else 0
        info, error = rt.create_actor(handle, spec.SerializeToString(), request_id, args, kwargs)
        if error is not None:
            if error.kind == common_pb2.ALREADY_EXISTS:
                ns = opts["namespace"] or rt.namespace
                if not ns and error.message:
                    raise ValueError(error.message)  # the node knows the anonymous namespace
                raise ValueError(
                    f"The name {name} (namespace={ns}) is already taken. Please use a different "
                    f"name or get the existing actor using ray.get_actor('{name}', "
                    f"namespace='{ns}')")
            from ember import exceptions

            raise exceptions.exception_for_error(error)
        if info is not None and info.actor_id != actor_id:
            # get_if_exists found an existing actor.
            return ActorHandle.from_info(info)
        return ActorHandle(actor_id, handle.descriptor, meta.class_name, meta.methods,
                           opts["max_task_retries"], meta.method_retries)


class ActorMethod:
    """``handle.method``: call it with ``.remote()``; ``.options()`` changes returns or group."""

    __slots__ = ("_group", "_handle", "_name", "_num_returns", "_overrides")

    def __init__(self, handle: ActorHandle, name: str, num_returns: int, group: str,
                 overrides: tuple = ()):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._group = group
        self._overrides = overrides

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'object.{self._name}()', try 'object.{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        """Call the method; return its ObjectRef (a list for num_returns > 1, None for 0)."""
        return self._handle._call(self._name, self._num_returns, self._group, self._overrides,
                                  args, kwargs)

    def options(self, **options) -> ActorMethod:
        num_returns = self._num_returns
        group = self._group
        overrides = dict(self._overrides)
        for key, value in options.items():
            if key == "num_returns":
                _check_num_returns(value)
                num_returns = value
            elif key == "concurrency_group":
                group = value or ""
            elif key in ("max_task_retries", "retry_exceptions", "name"):
                overrides[key] = value
            elif key in IGNORED_METHOD_OPTIONS:
                logger.debug("ember ignores the actor method option %s=%r", key, value)
            else:
                raise ValueError(f"Invalid option keyword {key} for actor methods.")
        return ActorMethod(self._handle, self._name, num_returns, group,
                           tuple(sorted(overrides.items())))

    def bind(self, *args, **kwargs):
        raise NotImplementedError("ember does not support Ray DAGs (.bind) yet")

    def __repr__(self):
        return f"ActorMethod({self._handle._ember_class_name}.{self._name})"


class ActorHandle:
    """A handle to an actor: ``handle.method.remote(...)`` calls a method.

    Equal handles name the same actor. Pickled, a handle travels as the
    actor's id, class descriptor and method table.
    """

    def __init__(self, actor_id: bytes, class_descriptor: common_pb2.FunctionDescriptor,
                 class_name: str, methods: dict, max_task_retries: int = 0,
                 method_retries: dict | None = None):
        self._ember_actor_id = actor_id
        self._actor_id = ActorID(actor_id)
        self._ember_descriptor = class_descriptor
        self._ember_class_name = class_name
        self._ember_methods = dict(methods)
        self._ember_max_task_retries = max_task_retries
        self._ember_method_retries = dict(method_retries or {})
        # (method, num_returns, group, overrides) -> encoded static TaskSpec.
        self._ember_specs: dict[tuple, bytes] = {}

    @classmethod
    def from_info(cls, info) -> ActorHandle:
        """A handle from the node's ``ActorInfo`` (get_actor, get_if_exists)."""
        creation = info.creation
        methods = {m.name: (m.num_returns, m.concurrency_group) for m in creation.methods}
        descriptor = common_pb2.FunctionDescriptor()
        descriptor.CopyFrom(info.class_function)
        return cls(info.actor_id, descriptor, creation.class_name, methods,
                   creation.max_task_retries)

    @classmethod
    def from_creation(cls, spec) -> ActorHandle:
        """A handle from the actor's creation ``TaskSpec`` (inside the actor)."""
        creation = spec.actor_creation
        methods = {m.name: (m.num_returns, m.concurrency_group) for m in creation.methods}
        descriptor = common_pb2.FunctionDescriptor()
        descriptor.CopyFrom(spec.function)
        return cls(creation.actor_id, descriptor, creation.class_name, methods,
                   creation.max_task_retries)

    def __getattr__(self, name: str) -> ActorMethod:
        # Only called when normal lookup fails: a method (cached in __dict__ once made).
        d = self.__dict__
        methods = d.get("_ember_methods")
        entry = None
        if methods is not None:
            entry = methods.get(name) or BUILTIN_METHODS.get(name)
        if entry is None:
            raise AttributeError(f"'ActorHandle' object has no attribute '{name}'")
        bound = ActorMethod(self, name, entry[0], entry[1])
        d[name] = bound
        return bound

    def _call(self, name: str, num_returns: int, group: str, overrides: tuple, args, kwargs):
        key = (name, num_returns, group, overrides)
        spec = self._ember_specs.get(key)
        if spec is None:
            spec = self._build_spec(name, num_returns, group, dict(overrides))
            self._ember_specs[key] = spec
        rt = state.runtime
        if rt is None:
            from ember._private.api import auto_init

            rt = auto_init()
        if num_returns == 1 and not args and not kwargs:
            ref = rt.submit_no_args(None, spec)
            if ref is not None:
                return ref
        refs = rt.submit_task(None, spec, num_returns, args, kwargs)
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs

    def _build_spec(self, name: str, num_returns: int, group: str, overrides: dict) -> bytes:
        default_retries, default_retry_exc = self._ember_method_retries.get(name, (None, None))
        retries = overrides.get("max_task_retries", default_retries)
        if retries is None:
            retries = self._ember_max_task_retries
        retry = overrides.get("retry_exceptions", default_retry_exc) or False
        allowlist = []
        if not isinstance(retry, bool):
            allowlist = [t.__name__ for t in retry]
            retry = True
        return common_pb2.TaskSpec(
            function=self._ember_descriptor,
            num_returns=num_returns,
            max_retries=retries,
            retry_exceptions=retry,
            retry_exception_allowlist=allowlist,
            name=overrides.get("name") or f"{self._ember_class_name}.{name}",
            actor_id=self._ember_actor_id,
            method_name=name,
            concurrency_group=group,
        ).SerializeToString()

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._ember_actor_id == self._ember_actor_id

    def __hash__(self):
        return hash(self._ember_actor_id)

    def __repr__(self):
        return f"Actor({self._ember_class_name}, {self._ember_actor_id.hex()})"

    def __reduce__(self):
        methods = tuple((n, r, g) for n, (r, g) in self._ember_methods.items())
        return (_rebuild_actor_handle,
                (self._ember_actor_id, self._ember_descriptor.SerializeToString(),
                 self._ember_class_name, methods, self._ember_max_task_retries,
                 self._ember_method_retries))


def _rebuild_actor_handle(actor_id, descriptor, class_name, methods, max_task_retries,
                          method_retries=None) -> ActorHandle:
    return ActorHandle(actor_id, common_pb2.FunctionDescriptor.FromString(descriptor), class_name,
                       {n: (r, g) for n, r, g in methods}, max_task_retries, method_retries)


class ActorExit(SystemExit):
    """Raised by ``exit_actor()``: the worker ends the actor after the current call."""


def exit_actor() -> None:
    """End the current actor after this call: later calls fail with ``ActorDiedError``.

    Raises ``TypeError`` outside an actor.
    """
    rt = state.runtime
    if rt is None or not rt.actor_id:
        raise TypeError("exit_actor API is called on a non-actor worker. Call this API inside an "
                        "actor method if you'd like to exit the actor gracefully.")
    raise ActorExit(0)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the named actor; ValueError if there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be None or a string, got: '{type(namespace)}'.")
        if namespace == "":
            raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    rt = state.runtime
    if rt is None:
        from ember._private.api import auto_init

        rt = auto_init()
    info, error = rt.get_actor(name, namespace or "")
    if error is not None:
        if error.kind == common_pb2.NOT_FOUND:
            raise ValueError(
                f"Failed to look up actor with name '{name}'. This could because 1. You are "
                "trying to look up a named actor you didn't create. 2. The named actor died. "
                "3. You did not use a namespace matching the namespace of the actor.")
        from ember import exceptions

        raise exceptions.exception_for_error(error)
    if info.class_function.language in (common_pb2.GO, common_pb2.RUST):
        from ember.cross_language import CrossLanguageActor

        return CrossLanguageActor(bytes(info.actor_id), info.class_function,
                                  info.creation.max_task_retries)
    return ActorHandle.from_info(info)


def kill(actor, *, no_restart: bool = True) -> None:
    """Kill an actor's worker at once. ``no_restart=False`` lets it restart (max_restarts)."""
    from ember.cross_language import CrossLanguageActor

    if not isinstance(actor, (ActorHandle, CrossLanguageActor)):
        raise ValueError(  # noqa: TRY004 - Ray raises ValueError heref"ray.kill() only supported for actors. For tasks, try ray.cancel(). "
                         f"Got: {type(actor)}.")
    rt = state.runtime
    if rt is None:
        from ember._private.api import auto_init

        rt = auto_init()
    rt.kill_actor(actor._ember_actor_id, bool(no_restart))
