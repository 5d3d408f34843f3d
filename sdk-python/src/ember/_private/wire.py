"""Hand-encoded protobuf for the hot-path ops (``SubmitTask``, ``TaskFinished``, ``RefUpdate``,
``CreateActor``).

Building these with the generated classes costs a few microseconds per field
set; concatenating pre-encoded pieces costs a fraction of that. Protobuf
allows it: a message is a sequence of (tag, value) fields in any order, so the
static part of a ``TaskSpec`` is encoded once per remote function with the
generated class and the per-call fields (task id, parent, arguments) are
appended. Unit tests parse every encoder's output back with the generated
classes (tests/unit/test_wire.py).

Field numbers and tags come from proto/ember/v1/{common,local}.proto.
"""

from __future__ import annotations

from ember._private.protocol import encode_varint as varint

# ClientOp oneof fields (local.proto): tag = field << 3 | 2.
_OP_SUBMIT_TASK = b"\x1a"  # 3
_OP_REF_UPDATE = b"\x22"  # 4
_OP_TASK_FINISHED = b"\x4a"  # 9
_OP_CREATE_ACTOR = b"\x72"  # 14

# TaskSpec (common.proto).
_SPEC_TASK_ID = b"\x0a\x10"  # 1, 16 bytes
_SPEC_JOB_ID = b"\x12"  # 2
_SPEC_PARENT_TASK_ID = b"\x1a\x10"  # 3, 16 bytes
_SPEC_ARG = b"\x2a"  # 5

# TaskArg.
_ARG_REF = b"\x0a\x14"  # 1, 20 bytes
_ARG_VALUE = b"\x12"  # 2
_ARG_KEYWORD = b"\x1a"  # 3

# ObjectValue.
_VAL_FORMAT = b"\x08"  # 1, varint
_VAL_METADATA = b"\x12"  # 2
_VAL_INLINE = b"\x1a"  # 3
_VAL_SHM = b"\x22"  # 4
_VAL_CONTAINED = b"\x2a\x14"  # 5, 20 bytes each

# ShmLocation.
_SHM_OFFSET = b"\x08"
_SHM_SIZE = b"\x10"

# TaskFinished.
_FIN_TASK_ID = b"\x0a"
_FIN_RETURN = b"\x12"
_FIN_RETRYABLE = b"\x18\x01"
_FIN_ACTOR_EXIT = b"\x20\x01"

# CreateActor.
_CREATE_REQUEST_ID = b"\x08"  # 1, varint
_CREATE_SPEC = b"\x12"  # 2

# RefUpdate.
_REF_ADD = b"\x0a\x14"
_REF_REMOVE = b"\x12\x14"
_REF_UNMAP = b"\x1a\x14"

# SubmitTask.spec.
_SUBMIT_SPEC = b"\x0a"

_FORMATS = [b"\x08" + bytes([i]) for i in range(8)]


def field_bytes(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(data)) + data


def encode_value(
    fmt: int,
    metadata: bytes,
    inline_data: bytes | None,
    shm: tuple[int, int] | None = None,
    contained_refs: list[bytes] | tuple = (),
) -> bytes:
    """An ``ObjectValue``: inline bytes, or a shared-memory (offset, size)."""
    parts = [_FORMATS[fmt]]
    if metadata:
        parts += (_VAL_METADATA, varint(len(metadata)), metadata)
    if shm is not None:
        loc = _SHM_OFFSET + varint(shm[0]) + _SHM_SIZE + varint(shm[1])
        parts += (_VAL_SHM, varint(len(loc)), loc)
    else:
        data = inline_data if inline_data is not None else b""
        parts += (_VAL_INLINE, varint(len(data)), data)
    for ref in contained_refs:
        parts += (_VAL_CONTAINED, ref)
    return b"".join(parts)


def encode_inline_value(fmt: int, data: bytes) -> bytes:
    """An inline ``ObjectValue`` with no metadata and no contained refs: ``encode_value(fmt, b"", data)``."""
    return _FORMATS[fmt] + _VAL_INLINE + varint(len(data)) + data


def encode_ref_arg(object_id: bytes, keyword: str | None = None) -> bytes:
    """A ``TaskSpec.args`` entry passing ``object_id`` by reference."""
    if keyword is None:
        return b"\x2a\x16\x0a\x14" + object_id
    kw = keyword.encode()
    body = _ARG_REF + object_id + _ARG_KEYWORD + varint(len(kw)) + kw
    return _SPEC_ARG + varint(len(body)) + body


def encode_value_arg(value: bytes, keyword: str | None = None) -> bytes:
    """A ``TaskSpec.args`` entry holding an encoded ``ObjectValue``."""
    body = _ARG_VALUE + varint(len(value)) + value
    if keyword is not None:
        kw = keyword.encode()
        body += _ARG_KEYWORD + varint(len(kw)) + kw
    return _SPEC_ARG + varint(len(body)) + body


def encode_job_id(job_id: bytes) -> bytes:
    """The ``TaskSpec.job_id`` field."""
    return _SPEC_JOB_ID + varint(len(job_id)) + job_id


def encode_submit(spec_parts: list[bytes]) -> bytes:
    """A ``ClientOp{submit_task{spec}}`` from the encoded pieces of a ``TaskSpec``."""
    spec = b"".join(spec_parts)
    submit = _SUBMIT_SPEC + varint(len(spec)) + spec
    return _OP_SUBMIT_TASK + varint(len(submit)) + submit


def submit_head(static_spec: bytes, job_field: bytes, with_parent: bool = False) -> bytes:
    """``encode_submit([static_spec, job_field, spec_task_fields(task_id, parent)])`` up to the
    task fields, for a task without arguments: append ``spec_task_fields(task_id, parent)`` (a
    16-byte parent given ``with_parent``, none otherwise) to make the op."""
    spec_len = len(static_spec) + len(job_field) + len(_SPEC_TASK_ID) + 16
    if with_parent:
        spec_len += len(_SPEC_PARENT_TASK_ID) + 16
    submit_len = len(_SUBMIT_SPEC) + len(varint(spec_len)) + spec_len
    return _OP_SUBMIT_TASK + varint(submit_len) + _SUBMIT_SPEC + varint(spec_len) + static_spec + job_field


def spec_task_fields(task_id: bytes, parent_task_id: bytes | None) -> bytes:
    """The per-call ``task_id`` and ``parent_task_id`` fields of a ``TaskSpec``."""
    if parent_task_id:
        return _SPEC_TASK_ID + task_id + _SPEC_PARENT_TASK_ID + parent_task_id
    return _SPEC_TASK_ID + task_id


def encode_task_finished(
    task_id: bytes, returns: list[bytes], retryable: bool = False, actor_exit: bool = False
) -> bytes:
    """A ``ClientOp{task_finished}`` from encoded return ``ObjectValue``s."""
    if len(returns) == 1 and not retryable and not actor_exit:  # the common case, in one expression
        value = returns[0]
        body = _FIN_TASK_ID + varint(len(task_id)) + task_id + _FIN_RETURN + varint(len(value)) + value
        return _OP_TASK_FINISHED + varint(len(body)) + body
    parts = [_FIN_TASK_ID, varint(len(task_id)), task_id]
    for value in returns:
        parts += (_FIN_RETURN, varint(len(value)), value)
    if retryable:
        parts.append(_FIN_RETRYABLE)
    if actor_exit:
        parts.append(_FIN_ACTOR_EXIT)
    body = b"".join(parts)
    return _OP_TASK_FINISHED + varint(len(body)) + body


def encode_ref_update(add: list[bytes], remove: list[bytes], unmap=()) -> bytes:
    """A ``ClientOp{ref_update}``."""
    parts = []
    for oid in add:
        parts += (_REF_ADD, oid)
    for oid in remove:
        parts += (_REF_REMOVE, oid)
    for oid in unmap:
        parts += (_REF_UNMAP, oid)
    body = b"".join(parts)
    return _OP_REF_UPDATE + varint(len(body)) + body


def encode_create_actor(request_id: int, spec_parts: list[bytes]) -> bytes:
    """A ``ClientOp{create_actor{request_id, spec}}`` from the encoded pieces of a ``TaskSpec``."""
    spec = b"".join(spec_parts)
    body = _CREATE_SPEC + varint(len(spec)) + spec
    if request_id:
        body = _CREATE_REQUEST_ID + varint(request_id) + body
    return _OP_CREATE_ACTOR + varint(len(body)) + body
