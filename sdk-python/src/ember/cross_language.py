"""Calls across languages.

Call a function that a Go or Rust worker serves by name, or a Python
function exported by name, from Python::

    from ember import cross_language
    add = cross_language.go_function("math.add")
    assert ember.get(add.remote(1, 2)) == 3
    score = cross_language.rust_function("scoring.score").options(max_retries=5)

Export a Python function so that any language can call it by name (it runs
in the node's Python worker pool; the export stays registered on the node
after this program exits)::

    @ember.remote
    def predict(features):
        return sum(features) / len(features)

    cross_language.export(predict, "scoring.predict")

Actor classes work the same way: ``export(ActorClass, "name")`` makes a
Python actor class creatable by name, and ``python_actor_class("name")``
creates one the way other languages do::

    counter = cross_language.python_actor_class("shop.Counter").remote(10)
    ember.get(counter.add.remote(5))

Actors of classes that Go and Rust workers serve are created with
``go_actor_class(name)`` and ``rust_actor_class(name)`` (options: name,
namespace, lifetime, max_restarts, max_task_retries, max_concurrency,
get_if_exists); ``ember.get_actor`` finds named ones and ``ember.kill`` kills
them. If the process hosting one dies, the actor restarts on another process
serving its class while ``max_restarts`` allows::

    counter = cross_language.go_actor_class("go.Counter").options(max_restarts=1).remote(10)
    ember.get(counter.Incr.remote(1))  # 11

Values across languages are msgpack (None, bool, int, float, str, bytes,
lists, dicts) or Arrow tables; a Python-only value (anything else) raises
TypeError naming its type. Results come back as the matching Python values.
"""

from __future__ import annotations

from ember._private.remote_function import FunctionHandle, RemoteFunction
from ember.v1 import common_pb2, local_pb2

__all__ = [
    "CrossLanguageActor",
    "CrossLanguageActorClass",
    "CrossLanguageFunction",
    "export",
    "go_actor_class",
    "go_function",
    "python_actor_class",
    "python_function",
    "rust_actor_class",
    "rust_function",
]

_OPTIONS = {"num_returns": 1, "max_retries": 3, "name": None}


class CrossLanguageFunction:
    """A function of some language, called by its registered name."""

    def __init__(self, language: int, name: str, options: dict | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a function name must be a non-empty string, got {name!r}")
        self._language = language
        self._name = name
        opts = dict(_OPTIONS)
        for key, value in (options or {}).items():
            if key not in _OPTIONS:
                raise ValueError(f"Invalid option keyword {key} for cross-language functions "
                                 f"(valid: {', '.join(_OPTIONS)})")
            opts[key] = value
        if not isinstance(opts["num_returns"], int) or opts["num_returns"] < 0:
            raise ValueError(f"num_returns must be a non-negative integer, got {opts['num_returns']!r}")
        if not isinstance(opts["max_retries"], int) or opts["max_retries"] < -1:
            raise ValueError(f"max_retries must be an integer >= -1, got {opts['max_retries']!r}")
        self._options = opts
        self._static_spec = common_pb2.TaskSpec(
            function=common_pb2.FunctionDescriptor(language=language, name=name),
            num_returns=opts["num_returns"],
            max_retries=opts["max_retries"],
            name=opts["name"] or name,
            cross_language=True,
        ).SerializeToString()

    def __repr__(self) -> str:
        return f"CrossLanguageFunction({common_pb2.Language.Name(self._language)}, {self._name!r})"

    def options(self, **options) -> CrossLanguageFunction:
        """A copy with some options changed (num_returns, max_retries, name)."""
        merged = {k: v for k, v in self._options.items() if _OPTIONS[k] != v}
        merged.update(options)
        return CrossLanguageFunction(self._language, self._name, merged)

    def remote(self, *args, **kwargs):
        """Submit a call; returns its ObjectRef (a list of them for num_returns > 1)."""
        if kwargs:
            raise TypeError("functions of other languages take positional arguments only")
        from ember._private.api import auto_init

        rt = auto_init()
        n = self._options["num_returns"]
        refs = rt.submit_task(None, self._static_spec, n, args, None, cross_language=True)
        return refs[0] if n == 1 else refs


def go_function(name: str) -> CrossLanguageFunction:
    """A function a Go worker serves under ``name`` (``ember.Register`` + ``ServeWorker``)."""
    return CrossLanguageFunction(common_pb2.GO, name)


def rust_function(name: str) -> CrossLanguageFunction:
    """A function a Rust worker serves under ``name`` (``Worker::register`` + ``serve``)."""
    return CrossLanguageFunction(common_pb2.RUST, name)


def python_function(name: str) -> CrossLanguageFunction:
    """A Python function exported under ``name`` (see ``export``), called as other languages do."""
    return CrossLanguageFunction(common_pb2.PYTHON, name)


class CrossLanguageActorClass:
    """An actor class of some language, created by its registered name."""

    def __init__(self, language: int, name: str, options: dict | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a class name must be a non-empty string, got {name!r}")
        allowed = {"name": "", "namespace": "", "max_restarts": 0, "max_task_retries": 0,
                   "lifetime": None, "max_concurrency": 0, "get_if_exists": False}
        opts = dict(allowed)
        for key, value in (options or {}).items():
            if key not in allowed:
                raise ValueError(f"Invalid option keyword {key} for cross-language actor classes "
                                 f"(valid: {', '.join(allowed)})")
            opts[key] = value
        self._language, self._name, self._options = language, name, opts

    def options(self, **options) -> CrossLanguageActorClass:
        merged = dict(self._options)
        merged.update(options)
        return CrossLanguageActorClass(self._language, self._name, merged)

    def remote(self, *args, **kwargs) -> CrossLanguageActor:
        """Create the actor; returns its handle at once."""
        if kwargs:
            raise TypeError("classes of other languages take positional arguments only")
        import os

        from ember._private.api import auto_init

        rt = auto_init()
        opts = self._options
        actor_id = os.urandom(16)
        creation = common_pb2.ActorCreation(
            actor_id=actor_id, name=opts["name"] or "", namespace=opts["namespace"] or "",
            detached=opts["lifetime"] == "detached", max_restarts=opts["max_restarts"],
            max_task_retries=opts["max_task_retries"], class_name=self._name,
            max_concurrency=opts["max_concurrency"] or 0, get_if_exists=bool(opts["get_if_exists"]))
        descriptor = common_pb2.FunctionDescriptor(language=self._language, name=self._name)
        spec = common_pb2.TaskSpec(function=descriptor, num_returns=1, max_retries=opts["max_restarts"],
                                   name=f"{self._name}.__init__", actor_creation=creation,
                                   cross_language=True)
        request_id = next(rt._request_ids)
        _info, error = rt.create_actor(None, spec.SerializeToString(), request_id, args, None,
                                      cross_language=True)
        if error is not None:
            from ember import exceptions

            raise exceptions.exception_for_error(error)
        if _info is not None and _info.actor_id:
            actor_id = bytes(_info.actor_id)  # get_if_exists: the existing actor
        return CrossLanguageActor(actor_id, descriptor, opts["max_task_retries"])


class CrossLanguageActor:
    """A handle to an actor of some language: ``handle.method.remote(*args)``."""

    def __init__(self, actor_id: bytes, descriptor, max_task_retries: int = 0):
        self._actor_id = actor_id
        self._ember_actor_id = actor_id  # what ember.kill reads
        self._descriptor = descriptor
        self._retries = max_task_retries
        self._specs: dict[str, bytes] = {}

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        return _CrossLanguageMethod(self, method)

    def __repr__(self) -> str:
        return (f"CrossLanguageActor({common_pb2.Language.Name(self._descriptor.language)}, "
                f"{self._descriptor.name!r}, {self._actor_id.hex()})")

    def __eq__(self, other) -> bool:
        return isinstance(other, CrossLanguageActor) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def _spec(self, method: str) -> bytes:
        spec = self._specs.get(method)
        if spec is None:
            spec = common_pb2.TaskSpec(
                function=self._descriptor, num_returns=1, max_retries=self._retries,
                actor_id=self._actor_id, method_name=method, name=f"{self._descriptor.name}.{method}",
                cross_language=True).SerializeToString()
            self._specs[method] = spec
        return spec


class _CrossLanguageMethod:
    def __init__(self, actor: CrossLanguageActor, method: str):
        self._actor, self._method = actor, method

    def remote(self, *args, **kwargs):
        if kwargs:
            raise TypeError("methods of cross-language actors take positional arguments only")
        from ember._private.api import auto_init

        rt = auto_init()
        return rt.submit_task(None, self._actor._spec(self._method), 1, args, None,
                              cross_language=True)[0]


def go_actor_class(name: str) -> CrossLanguageActorClass:
    """An actor class a Go worker serves under ``name`` (``ember.RegisterActor`` + ``ServeWorker``).
    Method names are the Go method names (``handle.Incr.remote()``); a lower-case first letter
    also finds the exported Go method (``handle.incr.remote()``)."""
    return CrossLanguageActorClass(common_pb2.GO, name)


def rust_actor_class(name: str) -> CrossLanguageActorClass:
    """An actor class a Rust worker serves under ``name`` (``Worker::register_actor`` + ``serve``)."""
    return CrossLanguageActorClass(common_pb2.RUST, name)


def python_actor_class(name: str) -> CrossLanguageActorClass:
    """A Python actor class exported under ``name`` (see ``export``), created as other
    languages do."""
    return CrossLanguageActorClass(common_pb2.PYTHON, name)


def export(function, name: str) -> None:
    """Make ``function`` (a plain function, an ``@ember.remote`` function or actor class)
    callable (creatable) by ``name`` from any language. Arguments arrive as the Python values
    of their msgpack/Arrow form; results must be msgpack-able (or Arrow tables)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an export name must be a non-empty string, got {name!r}")
    from ember._private.actor import ActorClass

    if isinstance(function, (RemoteFunction, ActorClass)):
        handle = function._handle
    elif callable(function):
        handle = FunctionHandle(function)
    else:
        raise TypeError(f"export needs a function, got {type(function).__name__}")
    handle.ensure_pickled()
    from ember._private.api import auto_init
    from ember._private.runtime import _op

    rt = auto_init()
    descriptor = common_pb2.FunctionDescriptor(
        language=common_pb2.PYTHON, function_id=handle.function_id, name=name)
    rt.send([_op(register_function=local_pb2.RegisterFunction(
        function=descriptor, payload=handle.payload, export=True))])
