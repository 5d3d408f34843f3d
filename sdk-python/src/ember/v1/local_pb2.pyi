from ember.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_KIND_UNSPECIFIED: _ClassVar[ClientKind]
    DRIVER: _ClassVar[ClientKind]
    WORKER: _ClassVar[ClientKind]

class ActorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_STATE_UNSPECIFIED: _ClassVar[ActorState]
    PENDING: _ClassVar[ActorState]
    ALIVE: _ClassVar[ActorState]
    RESTARTING: _ClassVar[ActorState]
    DEAD: _ClassVar[ActorState]

class InfoKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INFO_KIND_UNSPECIFIED: _ClassVar[InfoKind]
    CLUSTER_STATUS: _ClassVar[InfoKind]
CLIENT_KIND_UNSPECIFIED: ClientKind
DRIVER: ClientKind
WORKER: ClientKind
ACTOR_STATE_UNSPECIFIED: ActorState
PENDING: ActorState
ALIVE: ActorState
RESTARTING: ActorState
DEAD: ActorState
INFO_KIND_UNSPECIFIED: InfoKind
CLUSTER_STATUS: InfoKind

class Hello(_message.Message):
    __slots__ = ("token", "kind", "worker_id", "pid", "language", "namespace", "code_search_path", "peer_node_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CODE_SEARCH_PATH_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    kind: ClientKind
    worker_id: bytes
    pid: int
    language: _common_pb2.Language
    namespace: str
    code_search_path: _containers.RepeatedScalarFieldContainer[str]
    peer_node_id: bytes
    def __init__(self, token: _Optional[str] = ..., kind: _Optional[_Union[ClientKind, str]] = ..., worker_id: _Optional[bytes] = ..., pid: _Optional[int] = ..., language: _Optional[_Union[_common_pb2.Language, str]] = ..., namespace: _Optional[str] = ..., code_search_path: _Optional[_Iterable[str]] = ..., peer_node_id: _Optional[bytes] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("node_id", "job_id", "shm_path", "shm_size", "session_dir", "max_inline_bytes", "node_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHM_PATH_FIELD_NUMBER: _ClassVar[int]
    SHM_SIZE_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    MAX_INLINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    job_id: bytes
    shm_path: str
    shm_size: int
    session_dir: str
    max_inline_bytes: int
    node_address: str
    def __init__(self, node_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., shm_path: _Optional[str] = ..., shm_size: _Optional[int] = ..., session_dir: _Optional[str] = ..., max_inline_bytes: _Optional[int] = ..., node_address: _Optional[str] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[ClientOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[ClientOp, _Mapping]]] = ...) -> None: ...

class ClientOp(_message.Message):
    __slots__ = ("hello", "register_function", "submit_task", "ref_update", "get_objects", "put_object", "create_object", "cancel_task", "task_finished", "worker_blocked", "worker_unblocked", "info_request", "abort_object", "create_actor", "get_actor", "kill_actor", "serve_functions")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TASK_FIELD_NUMBER: _ClassVar[int]
    REF_UPDATE_FIELD_NUMBER: _ClassVar[int]
    GET_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PUT_OBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATE_OBJECT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_FINISHED_FIELD_NUMBER: _ClassVar[int]
    WORKER_BLOCKED_FIELD_NUMBER: _ClassVar[int]
    WORKER_UNBLOCKED_FIELD_NUMBER: _ClassVar[int]
    INFO_REQUEST_FIELD_NUMBER: _ClassVar[int]
    ABORT_OBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATE_ACTOR_FIELD_NUMBER: _ClassVar[int]
    GET_ACTOR_FIELD_NUMBER: _ClassVar[int]
    KILL_ACTOR_FIELD_NUMBER: _ClassVar[int]
    SERVE_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    register_function: RegisterFunction
    submit_task: SubmitTask
    ref_update: RefUpdate
    get_objects: GetObjects
    put_object: PutObject
    create_object: CreateObject
    cancel_task: CancelTask
    task_finished: TaskFinished
    worker_blocked: WorkerBlocked
    worker_unblocked: WorkerUnblocked
    info_request: InfoRequest
    abort_object: AbortObject
    create_actor: CreateActor
    get_actor: GetActor
    kill_actor: KillActor
    serve_functions: ServeFunctions
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., register_function: _Optional[_Union[RegisterFunction, _Mapping]] = ..., submit_task: _Optional[_Union[SubmitTask, _Mapping]] = ..., ref_update: _Optional[_Union[RefUpdate, _Mapping]] = ..., get_objects: _Optional[_Union[GetObjects, _Mapping]] = ..., put_object: _Optional[_Union[PutObject, _Mapping]] = ..., create_object: _Optional[_Union[CreateObject, _Mapping]] = ..., cancel_task: _Optional[_Union[CancelTask, _Mapping]] = ..., task_finished: _Optional[_Union[TaskFinished, _Mapping]] = ..., worker_blocked: _Optional[_Union[WorkerBlocked, _Mapping]] = ..., worker_unblocked: _Optional[_Union[WorkerUnblocked, _Mapping]] = ..., info_request: _Optional[_Union[InfoRequest, _Mapping]] = ..., abort_object: _Optional[_Union[AbortObject, _Mapping]] = ..., create_actor: _Optional[_Union[CreateActor, _Mapping]] = ..., get_actor: _Optional[_Union[GetActor, _Mapping]] = ..., kill_actor: _Optional[_Union[KillActor, _Mapping]] = ..., serve_functions: _Optional[_Union[ServeFunctions, _Mapping]] = ...) -> None: ...

class NodeMessage(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[NodeOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[NodeOp, _Mapping]]] = ...) -> None: ...

class NodeOp(_message.Message):
    __slots__ = ("hello_reply", "object_ready", "execute_task", "create_object_reply", "info_reply", "error", "warning", "actor_reply", "drop_actor")
    HELLO_REPLY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_READY_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_TASK_FIELD_NUMBER: _ClassVar[int]
    CREATE_OBJECT_REPLY_FIELD_NUMBER: _ClassVar[int]
    INFO_REPLY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    ACTOR_REPLY_FIELD_NUMBER: _ClassVar[int]
    DROP_ACTOR_FIELD_NUMBER: _ClassVar[int]
    hello_reply: HelloReply
    object_ready: ObjectReady
    execute_task: ExecuteTask
    create_object_reply: CreateObjectReply
    info_reply: InfoReply
    error: ErrorReply
    warning: Warning
    actor_reply: ActorReply
    drop_actor: KillActor
    def __init__(self, hello_reply: _Optional[_Union[HelloReply, _Mapping]] = ..., object_ready: _Optional[_Union[ObjectReady, _Mapping]] = ..., execute_task: _Optional[_Union[ExecuteTask, _Mapping]] = ..., create_object_reply: _Optional[_Union[CreateObjectReply, _Mapping]] = ..., info_reply: _Optional[_Union[InfoReply, _Mapping]] = ..., error: _Optional[_Union[ErrorReply, _Mapping]] = ..., warning: _Optional[_Union[Warning, _Mapping]] = ..., actor_reply: _Optional[_Union[ActorReply, _Mapping]] = ..., drop_actor: _Optional[_Union[KillActor, _Mapping]] = ...) -> None: ...

class RegisterFunction(_message.Message):
    __slots__ = ("function", "payload", "export")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    function: _common_pb2.FunctionDescriptor
    payload: bytes
    export: bool
    def __init__(self, function: _Optional[_Union[_common_pb2.FunctionDescriptor, _Mapping]] = ..., payload: _Optional[bytes] = ..., export: _Optional[bool] = ...) -> None: ...

class ServeFunctions(_message.Message):
    __slots__ = ("language", "names", "concurrency", "actor_classes")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_CLASSES_FIELD_NUMBER: _ClassVar[int]
    language: _common_pb2.Language
    names: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    actor_classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, language: _Optional[_Union[_common_pb2.Language, str]] = ..., names: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., actor_classes: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitTask(_message.Message):
    __slots__ = ("spec", "code_search_path")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CODE_SEARCH_PATH_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.TaskSpec
    code_search_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., code_search_path: _Optional[_Iterable[str]] = ...) -> None: ...

class RefUpdate(_message.Message):
    __slots__ = ("add", "remove", "unmap")
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    UNMAP_FIELD_NUMBER: _ClassVar[int]
    add: _containers.RepeatedScalarFieldContainer[bytes]
    remove: _containers.RepeatedScalarFieldContainer[bytes]
    unmap: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, add: _Optional[_Iterable[bytes]] = ..., remove: _Optional[_Iterable[bytes]] = ..., unmap: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetObjects(_message.Message):
    __slots__ = ("object_ids", "map")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    map: bool
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., map: _Optional[bool] = ...) -> None: ...

class PutObject(_message.Message):
    __slots__ = ("object_id", "value")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    value: _common_pb2.ObjectValue
    def __init__(self, object_id: _Optional[bytes] = ..., value: _Optional[_Union[_common_pb2.ObjectValue, _Mapping]] = ...) -> None: ...

class CreateObject(_message.Message):
    __slots__ = ("request_id", "object_id", "size", "timeout_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    object_id: bytes
    size: int
    timeout_ms: int
    def __init__(self, request_id: _Optional[int] = ..., object_id: _Optional[bytes] = ..., size: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class CreateObjectReply(_message.Message):
    __slots__ = ("request_id", "object_id", "location")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    object_id: bytes
    location: _common_pb2.ShmLocation
    def __init__(self, request_id: _Optional[int] = ..., object_id: _Optional[bytes] = ..., location: _Optional[_Union[_common_pb2.ShmLocation, _Mapping]] = ...) -> None: ...

class AbortObject(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    def __init__(self, object_id: _Optional[bytes] = ...) -> None: ...

class CancelTask(_message.Message):
    __slots__ = ("task_id", "force", "recursive")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    force: bool
    recursive: bool
    def __init__(self, task_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ObjectReady(_message.Message):
    __slots__ = ("object_id", "value")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    value: _common_pb2.ObjectValue
    def __init__(self, object_id: _Optional[bytes] = ..., value: _Optional[_Union[_common_pb2.ObjectValue, _Mapping]] = ...) -> None: ...

class ExecuteTask(_message.Message):
    __slots__ = ("spec", "function_payload", "gpu_ids", "assigned_resources", "code_search_path")
    class AssignedResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CODE_SEARCH_PATH_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.TaskSpec
    function_payload: bytes
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    assigned_resources: _containers.ScalarMap[str, float]
    code_search_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., function_payload: _Optional[bytes] = ..., gpu_ids: _Optional[_Iterable[str]] = ..., assigned_resources: _Optional[_Mapping[str, float]] = ..., code_search_path: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateActor(_message.Message):
    __slots__ = ("request_id", "spec", "code_search_path")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CODE_SEARCH_PATH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    spec: _common_pb2.TaskSpec
    code_search_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[int] = ..., spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., code_search_path: _Optional[_Iterable[str]] = ...) -> None: ...

class GetActor(_message.Message):
    __slots__ = ("request_id", "name", "namespace")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    name: str
    namespace: str
    def __init__(self, request_id: _Optional[int] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class KillActor(_message.Message):
    __slots__ = ("actor_id", "no_restart")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    no_restart: bool
    def __init__(self, actor_id: _Optional[bytes] = ..., no_restart: _Optional[bool] = ...) -> None: ...

class ActorReply(_message.Message):
    __slots__ = ("request_id", "actor")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    actor: ActorInfo
    def __init__(self, request_id: _Optional[int] = ..., actor: _Optional[_Union[ActorInfo, _Mapping]] = ...) -> None: ...

class ActorInfo(_message.Message):
    __slots__ = ("actor_id", "state", "class_function", "creation", "death_cause", "num_restarts", "node_id", "pid")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLASS_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    CREATION_FIELD_NUMBER: _ClassVar[int]
    DEATH_CAUSE_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    state: ActorState
    class_function: _common_pb2.FunctionDescriptor
    creation: _common_pb2.ActorCreation
    death_cause: str
    num_restarts: int
    node_id: bytes
    pid: int
    def __init__(self, actor_id: _Optional[bytes] = ..., state: _Optional[_Union[ActorState, str]] = ..., class_function: _Optional[_Union[_common_pb2.FunctionDescriptor, _Mapping]] = ..., creation: _Optional[_Union[_common_pb2.ActorCreation, _Mapping]] = ..., death_cause: _Optional[str] = ..., num_restarts: _Optional[int] = ..., node_id: _Optional[bytes] = ..., pid: _Optional[int] = ...) -> None: ...

class TaskFinished(_message.Message):
    __slots__ = ("task_id", "returns", "retryable_error", "actor_exit")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_ERROR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_EXIT_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    returns: _containers.RepeatedCompositeFieldContainer[_common_pb2.ObjectValue]
    retryable_error: bool
    actor_exit: bool
    def __init__(self, task_id: _Optional[bytes] = ..., returns: _Optional[_Iterable[_Union[_common_pb2.ObjectValue, _Mapping]]] = ..., retryable_error: _Optional[bool] = ..., actor_exit: _Optional[bool] = ...) -> None: ...

class WorkerBlocked(_message.Message):
    __slots__ = ("returned_task_ids",)
    RETURNED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    returned_task_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, returned_task_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class WorkerUnblocked(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("request_id", "kind")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    kind: InfoKind
    def __init__(self, request_id: _Optional[int] = ..., kind: _Optional[_Union[InfoKind, str]] = ...) -> None: ...

class InfoReply(_message.Message):
    __slots__ = ("request_id", "cluster_status")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    cluster_status: ClusterStatus
    def __init__(self, request_id: _Optional[int] = ..., cluster_status: _Optional[_Union[ClusterStatus, _Mapping]] = ...) -> None: ...

class ErrorReply(_message.Message):
    __slots__ = ("request_id", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    error: _common_pb2.TaskError
    def __init__(self, request_id: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.TaskError, _Mapping]] = ...) -> None: ...

class Warning(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "address", "alive", "is_head", "resources_total", "resources_available", "object_store_capacity", "object_store_used", "num_workers", "object_store_spilled", "object_store_num_spilled", "functions")
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ResourcesAvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    IS_HEAD_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_USED_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_SPILLED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_NUM_SPILLED_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    address: str
    alive: bool
    is_head: bool
    resources_total: _containers.ScalarMap[str, float]
    resources_available: _containers.ScalarMap[str, float]
    object_store_capacity: int
    object_store_used: int
    num_workers: int
    object_store_spilled: int
    object_store_num_spilled: int
    functions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[bytes] = ..., address: _Optional[str] = ..., alive: _Optional[bool] = ..., is_head: _Optional[bool] = ..., resources_total: _Optional[_Mapping[str, float]] = ..., resources_available: _Optional[_Mapping[str, float]] = ..., object_store_capacity: _Optional[int] = ..., object_store_used: _Optional[int] = ..., num_workers: _Optional[int] = ..., object_store_spilled: _Optional[int] = ..., object_store_num_spilled: _Optional[int] = ..., functions: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskCounts(_message.Message):
    __slots__ = ("pending", "running", "finished", "failed", "infeasible")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    pending: int
    running: int
    finished: int
    failed: int
    infeasible: int
    def __init__(self, pending: _Optional[int] = ..., running: _Optional[int] = ..., finished: _Optional[int] = ..., failed: _Optional[int] = ..., infeasible: _Optional[int] = ...) -> None: ...

class InfeasibleTask(_message.Message):
    __slots__ = ("task_id", "name", "resources")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    name: str
    resources: _containers.ScalarMap[str, float]
    def __init__(self, task_id: _Optional[bytes] = ..., name: _Optional[str] = ..., resources: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("nodes", "tasks", "infeasible", "num_objects", "actors", "jobs")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    NUM_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    tasks: TaskCounts
    infeasible: _containers.RepeatedCompositeFieldContainer[InfeasibleTask]
    num_objects: int
    actors: _containers.RepeatedCompositeFieldContainer[ActorInfo]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., tasks: _Optional[_Union[TaskCounts, _Mapping]] = ..., infeasible: _Optional[_Iterable[_Union[InfeasibleTask, _Mapping]]] = ..., num_objects: _Optional[int] = ..., actors: _Optional[_Iterable[_Union[ActorInfo, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "node_id", "node_address", "namespace", "driver_pid", "start_time_ms", "end_time_ms", "finished")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    node_id: bytes
    node_address: str
    namespace: str
    driver_pid: int
    start_time_ms: int
    end_time_ms: int
    finished: bool
    def __init__(self, job_id: _Optional[bytes] = ..., node_id: _Optional[bytes] = ..., node_address: _Optional[str] = ..., namespace: _Optional[str] = ..., driver_pid: _Optional[int] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., finished: _Optional[bool] = ...) -> None: ...
