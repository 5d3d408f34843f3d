"""ember: distributed execution with Ray Core's Python API.

An existing Ray program runs on ember by changing one import::

    import ember as ray

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))

    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def inc(self):
            self.n += 1
            return self.n

    c = Counter.remote()
    print(ray.get([c.inc.remote() for _ in range(3)]))
"""

from ember import actor, cross_language, exceptions, util
from ember._private.actor import get_actor, kill, method
from ember._private.api import (
    RayContext,
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_gpu_ids,
    init,
    is_initialized,
    nodes,
    object_store_stats,
    put,
    remote,
    shutdown,
    wait,
)
from ember._private.object_ref import ObjectRef
from ember._private.remote_function import RemoteFunction
from ember._private.runtime_context import RuntimeContext, get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "ObjectRef",
    "RayContext",
    "RemoteFunction",
    "RuntimeContext",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "cross_language",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "object_store_stats",
    "put",
    "remote",
    "shutdown",
    "util",
    "wait",
]
