from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Language(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LANGUAGE_UNSPECIFIED: _ClassVar[Language]
    PYTHON: _ClassVar[Language]
    GO: _ClassVar[Language]
    RUST: _ClassVar[Language]

class ValueFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FORMAT_UNSPECIFIED: _ClassVar[ValueFormat]
    PICKLE: _ClassVar[ValueFormat]
    MSGPACK: _ClassVar[ValueFormat]
    ARROW: _ClassVar[ValueFormat]
    RAW: _ClassVar[ValueFormat]
    ERROR: _ClassVar[ValueFormat]

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    TASK_FAILED: _ClassVar[ErrorKind]
    WORKER_CRASHED: _ClassVar[ErrorKind]
    TASK_CANCELLED: _ClassVar[ErrorKind]
    OBJECT_LOST: _ClassVar[ErrorKind]
    UNKNOWN_FUNCTION: _ClassVar[ErrorKind]
    INVALID_ARGUMENT: _ClassVar[ErrorKind]
    OBJECT_STORE_FULL: _ClassVar[ErrorKind]
    FUNCTION_LOAD_FAILED: _ClassVar[ErrorKind]
    WORKER_START_FAILED: _ClassVar[ErrorKind]
    INTERNAL: _ClassVar[ErrorKind]
    UNAUTHENTICATED: _ClassVar[ErrorKind]
    GET_TIMEOUT: _ClassVar[ErrorKind]
    ACTOR_DIED: _ClassVar[ErrorKind]
    NOT_FOUND: _ClassVar[ErrorKind]
    ALREADY_EXISTS: _ClassVar[ErrorKind]
    NODE_DIED: _ClassVar[ErrorKind]

class SchedulingKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULING_DEFAULT: _ClassVar[SchedulingKind]
    SPREAD: _ClassVar[SchedulingKind]
    NODE_AFFINITY: _ClassVar[SchedulingKind]
LANGUAGE_UNSPECIFIED: Language
PYTHON: Language
GO: Language
RUST: Language
FORMAT_UNSPECIFIED: ValueFormat
PICKLE: ValueFormat
MSGPACK: ValueFormat
ARROW: ValueFormat
RAW: ValueFormat
ERROR: ValueFormat
ERROR_KIND_UNSPECIFIED: ErrorKind
TASK_FAILED: ErrorKind
WORKER_CRASHED: ErrorKind
TASK_CANCELLED: ErrorKind
OBJECT_LOST: ErrorKind
UNKNOWN_FUNCTION: ErrorKind
INVALID_ARGUMENT: ErrorKind
OBJECT_STORE_FULL: ErrorKind
FUNCTION_LOAD_FAILED: ErrorKind
WORKER_START_FAILED: ErrorKind
INTERNAL: ErrorKind
UNAUTHENTICATED: ErrorKind
GET_TIMEOUT: ErrorKind
ACTOR_DIED: ErrorKind
NOT_FOUND: ErrorKind
ALREADY_EXISTS: ErrorKind
NODE_DIED: ErrorKind
SCHEDULING_DEFAULT: SchedulingKind
SPREAD: SchedulingKind
NODE_AFFINITY: SchedulingKind

class TaskError(_message.Message):
    __slots__ = ("kind", "type_name", "message", "traceback", "language", "payload", "task_id", "function_name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    kind: ErrorKind
    type_name: str
    message: str
    traceback: str
    language: Language
    payload: bytes
    task_id: bytes
    function_name: str
    def __init__(self, kind: _Optional[_Union[ErrorKind, str]] = ..., type_name: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., language: _Optional[_Union[Language, str]] = ..., payload: _Optional[bytes] = ..., task_id: _Optional[bytes] = ..., function_name: _Optional[str] = ...) -> None: ...

class ShmLocation(_message.Message):
    __slots__ = ("offset", "size")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    size: int
    def __init__(self, offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ObjectValue(_message.Message):
    __slots__ = ("format", "metadata", "inline_data", "shm", "stored_size", "contained_refs")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    STORED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTAINED_REFS_FIELD_NUMBER: _ClassVar[int]
    format: ValueFormat
    metadata: bytes
    inline_data: bytes
    shm: ShmLocation
    stored_size: int
    contained_refs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, format: _Optional[_Union[ValueFormat, str]] = ..., metadata: _Optional[bytes] = ..., inline_data: _Optional[bytes] = ..., shm: _Optional[_Union[ShmLocation, _Mapping]] = ..., stored_size: _Optional[int] = ..., contained_refs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FunctionDescriptor(_message.Message):
    __slots__ = ("language", "function_id", "name")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    language: Language
    function_id: bytes
    name: str
    def __init__(self, language: _Optional[_Union[Language, str]] = ..., function_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class TaskArg(_message.Message):
    __slots__ = ("object_ref", "value", "keyword")
    OBJECT_REF_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    object_ref: bytes
    value: ObjectValue
    keyword: str
    def __init__(self, object_ref: _Optional[bytes] = ..., value: _Optional[_Union[ObjectValue, _Mapping]] = ..., keyword: _Optional[str] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("task_id", "job_id", "parent_task_id", "function", "args", "num_returns", "resources", "max_retries", "retry_exceptions", "name", "retry_exception_allowlist", "actor_id", "method_name", "actor_creation", "concurrency_group", "scheduling_strategy", "cross_language")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_EXCEPTION_ALLOWLIST_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_CREATION_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_GROUP_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CROSS_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    job_id: bytes
    parent_task_id: bytes
    function: FunctionDescriptor
    args: _containers.RepeatedCompositeFieldContainer[TaskArg]
    num_returns: int
    resources: _containers.ScalarMap[str, float]
    max_retries: int
    retry_exceptions: bool
    name: str
    retry_exception_allowlist: _containers.RepeatedScalarFieldContainer[str]
    actor_id: bytes
    method_name: str
    actor_creation: ActorCreation
    concurrency_group: str
    scheduling_strategy: SchedulingStrategy
    cross_language: bool
    def __init__(self, task_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., parent_task_id: _Optional[bytes] = ..., function: _Optional[_Union[FunctionDescriptor, _Mapping]] = ..., args: _Optional[_Iterable[_Union[TaskArg, _Mapping]]] = ..., num_returns: _Optional[int] = ..., resources: _Optional[_Mapping[str, float]] = ..., max_retries: _Optional[int] = ..., retry_exceptions: _Optional[bool] = ..., name: _Optional[str] = ..., retry_exception_allowlist: _Optional[_Iterable[str]] = ..., actor_id: _Optional[bytes] = ..., method_name: _Optional[str] = ..., actor_creation: _Optional[_Union[ActorCreation, _Mapping]] = ..., concurrency_group: _Optional[str] = ..., scheduling_strategy: _Optional[_Union[SchedulingStrategy, _Mapping]] = ..., cross_language: _Optional[bool] = ...) -> None: ...

class SchedulingStrategy(_message.Message):
    __slots__ = ("kind", "node_id", "soft")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    kind: SchedulingKind
    node_id: bytes
    soft: bool
    def __init__(self, kind: _Optional[_Union[SchedulingKind, str]] = ..., node_id: _Optional[bytes] = ..., soft: _Optional[bool] = ...) -> None: ...

class ActorCreation(_message.Message):
    __slots__ = ("actor_id", "name", "namespace", "detached", "max_restarts", "max_task_retries", "max_concurrency", "is_async", "concurrency_groups", "get_if_exists", "held_resources", "class_name", "methods")
    class ConcurrencyGroupsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class HeldResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TASK_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_GROUPS_FIELD_NUMBER: _ClassVar[int]
    GET_IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    HELD_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    name: str
    namespace: str
    detached: bool
    max_restarts: int
    max_task_retries: int
    max_concurrency: int
    is_async: bool
    concurrency_groups: _containers.ScalarMap[str, int]
    get_if_exists: bool
    held_resources: _containers.ScalarMap[str, float]
    class_name: str
    methods: _containers.RepeatedCompositeFieldContainer[ActorMethod]
    def __init__(self, actor_id: _Optional[bytes] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., detached: _Optional[bool] = ..., max_restarts: _Optional[int] = ..., max_task_retries: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., is_async: _Optional[bool] = ..., concurrency_groups: _Optional[_Mapping[str, int]] = ..., get_if_exists: _Optional[bool] = ..., held_resources: _Optional[_Mapping[str, float]] = ..., class_name: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[ActorMethod, _Mapping]]] = ...) -> None: ...

class ActorMethod(_message.Message):
    __slots__ = ("name", "num_returns", "concurrency_group")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_GROUP_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_returns: int
    concurrency_group: str
    def __init__(self, name: _Optional[str] = ..., num_returns: _Optional[int] = ..., concurrency_group: _Optional[str] = ...) -> None: ...

class ResourceSet(_message.Message):
    __slots__ = ("amounts",)
    class AmountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    amounts: _containers.ScalarMap[str, float]
    def __init__(self, amounts: _Optional[_Mapping[str, float]] = ...) -> None: ...
