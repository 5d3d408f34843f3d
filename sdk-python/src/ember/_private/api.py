"""The public functions behind ``ember.*`` (Ray Core's API)."""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import sys
import sysconfig
import threading
from itertools import compress

from ember import exceptions
from ember._private import state
from ember._private.object_ref import ObjectRef
from ember._private.remote_function import RemoteFunction

logger = logging.getLogger("ember")

_init_lock = threading.RLock()
# The node this process started (embedded cluster), stopped by shutdown().
_local_node = None
_atexit_registered = False


class RayContext(dict):
    """What ``init()`` returns: the address info, usable as a context manager that shuts down."""

    def __init__(self, address_info: dict):
        super().__init__(address_info)
        self.address_info = address_info
        self.dashboard_url = None
        self.python_version = ".".join(map(str, sys.version_info[:3]))
        from ember import __version__

        self.ray_version = __version__
        self.ray_commit = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()

    def disconnect(self):
        shutdown()


def _code_search_path() -> list[str]:
    paths = [os.getcwd()]
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if main and main not in ("-c", "-m") and os.path.exists(main):
        paths.append(os.path.dirname(os.path.abspath(main)))
    skip = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        entry = os.path.abspath(entry)
        if entry in skip or "site-packages" in entry or "dist-packages" in entry:
            continue
        if entry.startswith(sys.base_prefix) and "lib" in entry.split(os.sep):
            continue
        if entry not in paths:
            paths.append(entry)
    return paths


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict | None = None,
    object_store_memory: int | None = None,
    ignore_reinit_error: bool = False,
    namespace: str | None = None,
    runtime_env: dict | None = None,
    logging_level=None,
    log_to_driver: bool = True,
    include_dashboard=None,
    object_spilling_directory: str | None = None,
    _system_config: dict | None = None,
    **kwargs,
) -> RayContext:
    """Connect to an ember cluster, starting a local one when no address is given.

    ``address``: None starts a head + node for this process (unless
    ``EMBER_ADDRESS`` is set); ``"auto"`` or ``"host:port"`` connects to a
    running cluster on this machine. ``object_spilling_directory`` (or Ray's
    ``_system_config={"object_spilling_config": json.dumps({"type": "filesystem",
    "params": {"directory_path": ...}})}``) is where the local node spills
    objects when its store is full (default: under its session directory);
    ``_system_config["local_fs_capacity_threshold"]`` (default 0.95) how full
    that disk may get. Other Ray keyword arguments are accepted and ignored.
    """
    global _local_node, _atexit_registered
    from ember._private.node_launcher import find_session, start_local_node
    from ember._private.runtime import CoreRuntime

    with _init_lock:
        if state.runtime is not None:
            if ignore_reinit_error:
                logger.info("calling ember.init() again after it has already been called")
                return RayContext(_address_info(state.runtime))
            raise RuntimeError("Maybe you called ray.init twice by accident? This error can be suppressed "
                               "by passing in 'ignore_reinit_error=True' or by calling 'ray.shutdown()' "
                               "prior to 'ray.init()'.")
        for key in kwargs:
            logger.debug("ember.init ignores the argument %s", key)
        if runtime_env:
            logger.debug("ember.init ignores runtime_env (not supported yet)")
        if logging_level is not None:
            logging.getLogger("ember").setLevel(logging_level)
        address = address or os.environ.get("EMBER_ADDRESS") or os.environ.get("RAY_ADDRESS") or None
        if address in ("local",):
            address = None
        if address is None:
            spill_dir, node_env = _spill_settings(object_spilling_directory, _system_config)
            node = start_local_node(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                    object_store_memory=object_store_memory, spill_dir=spill_dir,
                                    env=node_env)
            info = dict(node.info)
            token = os.environ.get("EMBER_TOKEN") or info.get("token", "")
        else:
            if num_cpus is not None or num_gpus is not None or resources:
                raise ValueError("When connecting to an existing cluster, num_cpus and num_gpus must "
                                 "not be provided.")
            node = None
            info = find_session(address)
            token = info.get("token", "")
        try:
            rt = CoreRuntime(info["socket"], token, namespace=namespace or "",
                             code_search_path=_code_search_path(), session=info)
        except BaseException:
            if node is not None:
                node.stop()
            raise
        _local_node = node
        state.runtime = rt
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return RayContext(_address_info(rt))


def _spill_settings(directory: str | None, system_config: dict | None) -> tuple[str | None, dict]:
    """The spill directory and node environment from ``init``'s spilling arguments."""
    import json

    config = dict(system_config or {})
    env = {}
    spilling = config.pop("object_spilling_config", None)
    if spilling is not None and directory is None:
        spec = json.loads(spilling) if isinstance(spilling, str) else dict(spilling)
        if spec.get("type", "filesystem") != "filesystem":
            raise ValueError(f"object_spilling_config type {spec.get('type')!r} is not supported: "
                             "ember spills to a local directory ('filesystem')")
        path = spec.get("params", {}).get("directory_path")
        directory = path[0] if isinstance(path, list) else path
    threshold = config.pop("local_fs_capacity_threshold", None)
    if threshold is not None:
        env["EMBER_SPILL_DISK_MAX_FRACTION"] = str(float(threshold))
    for key in config:
        logger.debug("ember.init ignores _system_config[%r]", key)
    return directory, env


def _address_info(rt) -> dict:
    info = rt.session
    return {
        "address": info.get("address", rt.node_address),
        "gcs_address": info.get("address", rt.node_address),
        "node_ip_address": (info.get("address") or rt.node_address or "127.0.0.1").rsplit(":", 1)[0],
        "node_id": rt.node_id.hex(),
        "session_dir": rt.session_dir or info.get("session_dir", ""),
        "raylet_socket_name": info.get("socket", ""),
        "job_id": rt.job_id.hex(),
    }


def auto_init():
    """Call ``init()`` on first use, like Ray; return the runtime."""
    with _init_lock:
        if state.runtime is None:
            init()
        return state.runtime


def _runtime():
    rt = state.runtime
    if rt is None:
        raise exceptions.RaySystemError("ember.init() must be called first")
    return rt


def shutdown(_exiting_interpreter: bool = False) -> None:
    """Disconnect from the cluster, and stop the node if ``init()`` started it."""
    global _local_node
    with _init_lock:
        rt = state.runtime
        state.runtime = None
        if rt is not None:
            rt.shutdown()
        node, _local_node = _local_node, None
        if node is not None:
            node.stop()


def is_initialized() -> bool:
    """Whether ``init()`` has been called (always true inside a worker)."""
    return state.runtime is not None


def remote(*args, **kwargs):
    """Make a function remote (or a class an actor): ``@ember.remote`` or
    ``@ember.remote(num_cpus=..., ...)``."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("The @ray.remote decorator must be applied either with no arguments and no "
                        "parentheses, for example '@ray.remote', or it must be applied using some of "
                        "the arguments in the list of options, for example '@ray.remote(num_returns=2, "
                        "resources={\"CustomResource\": 1})'.")
    return lambda target: _make_remote(target, kwargs)


def _make_remote(target, options):
    if inspect.isclass(target):
        from ember._private.actor import ActorClass

        return ActorClass(target, options)
    if not (inspect.isfunction(target) or inspect.isbuiltin(target) or callable(target)):
        raise TypeError("The @ray.remote decorator must be applied to either a function or a class.")
    return RemoteFunction(target, options)


def _check_refs(object_refs, what="object_refs"):
    for ref in object_refs:
        if type(ref) is not ObjectRef:
            raise TypeError(f"Invalid type of object refs, {type(ref)}, is given. '{what}' must either be "
                            "an ObjectRef or a list of ObjectRefs.")


def get(object_refs, *, timeout: float | None = None):
    """The value(s) of an ObjectRef or a list of them; raises the task's exception, or GetTimeoutError."""
    rt = state.runtime or auto_init()
    if type(object_refs) is ObjectRef:
        return rt.get([object_refs._id], timeout)[0]
    if not isinstance(object_refs, (list, tuple)):
        _check_refs([object_refs])
    _check_refs(object_refs)
    return rt.get([r._id for r in object_refs], timeout)


def put(value, *, _owner=None) -> ObjectRef:
    """Store a value in the object store; return its ObjectRef."""
    if isinstance(value, ObjectRef):
        raise TypeError("Calling 'put' on an ray.ObjectRef is not allowed. If you really want to do this, "
                        "you can wrap the ray.ObjectRef in a list and call 'put' on it.")
    rt = state.runtime or auto_init()
    return rt.put(value)


def wait(object_refs, *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True):
    """Return (ready, not_ready): at most ``num_returns`` ready refs and the rest, in input order."""
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError("wait() expected a list of ray.ObjectRef, got "
                        f"{type(object_refs)}")
    _check_refs(object_refs)
    ids = [r._id for r in object_refs]
    if len(set(ids)) != len(ids):  # bytes hash in C: no ObjectRef.__hash__ call per ref
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(object_refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to ray.wait.")
    if timeout is not None and timeout < 0:
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
    rt = state.runtime or auto_init()
    if not object_refs:
        return [], []
    flags = rt.wait(ids, num_returns, timeout)
    if flags.count(True) <= num_returns:  # every ready ref is returned as ready
        return list(compress(object_refs, flags)), list(compress(object_refs, [not f for f in flags]))
    ready, not_ready = [], []
    for ref, is_ready in zip(object_refs, flags):
        if is_ready and len(ready) < num_returns:
            ready.append(ref)
        else:
            not_ready.append(ref)
    return ready, not_ready


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref``."""
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"ray.cancel() only supported for object refs. For actors, try ray.kill(). "
                        f"Got: {type(object_ref)}.")
    _runtime().cancel(object_ref.task_id(), force, recursive)


def cluster_resources() -> dict[str, float]:
    """The total resources of the live nodes."""
    return _sum_resources("resources_total", "object_store_capacity")


def object_store_stats() -> dict[str, int]:
    """Object store figures summed over the live nodes — what ``ember status`` prints.

    ``capacity`` and ``used``: bytes of shared memory; ``num_objects``: objects
    stored (in memory or spilled); ``spilled``: bytes of objects whose only
    copy is on disk, and ``num_spilled``: how many such objects.
    """
    status = _runtime().cluster_status()
    live = [n for n in status.nodes if n.alive]
    return {
        "capacity": sum(n.object_store_capacity for n in live),
        "used": sum(n.object_store_used for n in live),
        "num_objects": status.num_objects,
        "spilled": sum(n.object_store_spilled for n in live),
        "num_spilled": sum(n.object_store_num_spilled for n in live),
    }


def available_resources() -> dict[str, float]:
    """The resources not in use on the live nodes."""
    return _sum_resources("resources_available", None)


def _sum_resources(field: str, store_field: str | None) -> dict[str, float]:
    status = _runtime().cluster_status()
    out: dict[str, float] = {}
    for node in status.nodes:
        if not node.alive:
            continue
        for name, amount in getattr(node, field).items():
            out[name] = out.get(name, 0.0) + amount
        if store_field:
            capacity = getattr(node, store_field)
            if capacity and "object_store_memory" not in getattr(node, field):
                out["object_store_memory"] = out.get("object_store_memory", 0.0) + float(capacity)
        else:
            free = node.object_store_capacity - node.object_store_used
            if node.object_store_capacity and "object_store_memory" not in node.resources_available:
                out["object_store_memory"] = out.get("object_store_memory", 0.0) + float(max(free, 0))
    return out


def nodes() -> list[dict]:
    """The cluster's nodes in Ray's format."""
    status = _runtime().cluster_status()
    out = []
    for node in status.nodes:
        host, _, port = node.address.rpartition(":")
        out.append({
            "NodeID": node.node_id.hex(),
            "Alive": node.alive,
            "alive": node.alive,
            "NodeManagerAddress": host or node.address,
            "NodeManagerHostname": host or node.address,
            "NodeManagerPort": int(port) if port.isdigit() else 0,
            "ObjectManagerPort": int(port) if port.isdigit() else 0,
            "NodeName": host or node.address,
            "IsHead": node.is_head,
            "Resources": dict(node.resources_total),
            "ObjectStoreCapacity": node.object_store_capacity,
            "ObjectStoreUsed": node.object_store_used,
            "NumWorkers": node.num_workers,
            "Labels": {},
        })
    return out


def get_gpu_ids() -> list[int]:
    """The GPU ids assigned to the current task ([] in a driver)."""
    rt = state.runtime
    task = rt.current_task if rt is not None else None
    if task is None:
        return []
    if not task.gpu_ids and rt.actor_task is not None:
        task = rt.actor_task  # an actor's GPUs are those its creation got
    out = []
    for gid in task.gpu_ids:
        out.append(int(gid) if gid.isdigit() else gid)
    return out
