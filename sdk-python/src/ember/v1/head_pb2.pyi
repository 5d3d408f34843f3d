from ember.v1 import common_pb2 as _common_pb2
from ember.v1 import local_pb2 as _local_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _local_pb2.NodeInfo
    def __init__(self, node: _Optional[_Union[_local_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("heartbeat_interval_ms",)
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "resources_available", "tasks", "infeasible", "node")
    class ResourcesAvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    resources_available: _containers.ScalarMap[str, float]
    tasks: _local_pb2.TaskCounts
    infeasible: _containers.RepeatedCompositeFieldContainer[_local_pb2.InfeasibleTask]
    node: _local_pb2.NodeInfo
    def __init__(self, node_id: _Optional[bytes] = ..., resources_available: _Optional[_Mapping[str, float]] = ..., tasks: _Optional[_Union[_local_pb2.TaskCounts, _Mapping]] = ..., infeasible: _Optional[_Iterable[_Union[_local_pb2.InfeasibleTask, _Mapping]]] = ..., node: _Optional[_Union[_local_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_local_pb2.NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_local_pb2.NodeInfo, _Mapping]]] = ...) -> None: ...

class RegisterFunctionRequest(_message.Message):
    __slots__ = ("function", "payload")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    function: _common_pb2.FunctionDescriptor
    payload: bytes
    def __init__(self, function: _Optional[_Union[_common_pb2.FunctionDescriptor, _Mapping]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class RegisterFunctionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFunctionRequest(_message.Message):
    __slots__ = ("function",)
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    function: _common_pb2.FunctionDescriptor
    def __init__(self, function: _Optional[_Union[_common_pb2.FunctionDescriptor, _Mapping]] = ...) -> None: ...

class GetFunctionResponse(_message.Message):
    __slots__ = ("found", "payload")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    found: bool
    payload: bytes
    def __init__(self, found: _Optional[bool] = ..., payload: _Optional[bytes] = ...) -> None: ...

class KvPutRequest(_message.Message):
    __slots__ = ("namespace", "key", "value", "overwrite")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: bytes
    value: bytes
    overwrite: bool
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class KvPutResponse(_message.Message):
    __slots__ = ("added",)
    ADDED_FIELD_NUMBER: _ClassVar[int]
    added: bool
    def __init__(self, added: _Optional[bool] = ...) -> None: ...

class KvGetRequest(_message.Message):
    __slots__ = ("namespace", "key")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: bytes
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class KvGetResponse(_message.Message):
    __slots__ = ("found", "value")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class ActorRecord(_message.Message):
    __slots__ = ("actor", "owner_node_id")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    actor: _local_pb2.ActorInfo
    owner_node_id: bytes
    def __init__(self, actor: _Optional[_Union[_local_pb2.ActorInfo, _Mapping]] = ..., owner_node_id: _Optional[bytes] = ...) -> None: ...

class RegisterActorRequest(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: ActorRecord
    def __init__(self, record: _Optional[_Union[ActorRecord, _Mapping]] = ...) -> None: ...

class RegisterActorResponse(_message.Message):
    __slots__ = ("registered", "existing")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    registered: bool
    existing: ActorRecord
    def __init__(self, registered: _Optional[bool] = ..., existing: _Optional[_Union[ActorRecord, _Mapping]] = ...) -> None: ...

class GetActorInfoRequest(_message.Message):
    __slots__ = ("actor_id", "name", "namespace")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    name: str
    namespace: str
    def __init__(self, actor_id: _Optional[bytes] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class GetActorInfoResponse(_message.Message):
    __slots__ = ("found", "record")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    found: bool
    record: ActorRecord
    def __init__(self, found: _Optional[bool] = ..., record: _Optional[_Union[ActorRecord, _Mapping]] = ...) -> None: ...

class RegisterJobRequest(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _local_pb2.JobInfo
    def __init__(self, job: _Optional[_Union[_local_pb2.JobInfo, _Mapping]] = ...) -> None: ...

class RegisterJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_local_pb2.JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_local_pb2.JobInfo, _Mapping]]] = ...) -> None: ...

class GetHeadStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHeadStatsResponse(_message.Message):
    __slots__ = ("requests",)
    class RequestsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.ScalarMap[str, int]
    def __init__(self, requests: _Optional[_Mapping[str, int]] = ...) -> None: ...
