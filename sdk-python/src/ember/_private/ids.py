"""Typed-id helpers: task ids made by the submitter and the object ids derived from them.

``TaskId`` = 8-byte random per-process prefix + 8-byte little-endian counter
(16 bytes). ``ObjectId`` = ``TaskId`` + u32 little-endian index (20 bytes):
index ``i + 1`` is the task's ``i``-th return, index 0 an object made by ``put``.
"""

from __future__ import annotations

import itertools
import os
import struct

TASK_ID_LEN = 16
OBJECT_ID_LEN = 20
JOB_ID_LEN = 4
NODE_ID_LEN = 16
WORKER_ID_LEN = 16

_PUT_INDEX = b"\0\0\0\0"
_RETURN_INDEX = [struct.pack("<I", i + 1) for i in range(16)]


class TaskIdGenerator:
    """Makes this process's task ids: a random prefix and a counter.

    ``next()`` is thread-safe (``itertools.count`` advances atomically under the GIL).
    A fresh generator (new prefix) is made after ``fork`` by whoever creates a
    new runtime.
    """

    __slots__ = ("_counter", "prefix")

    def __init__(self, prefix: bytes | None = None):
        self.prefix = prefix if prefix is not None else os.urandom(8)
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return self.prefix + next(self._counter).to_bytes(8, "little")


def return_object_id(task_id: bytes, index: int) -> bytes:
    """The id of the task's ``index``-th return (0-based)."""
    if index < 16:
        return task_id + _RETURN_INDEX[index]
    return task_id + struct.pack("<I", index + 1)


def return_object_ids(task_id: bytes, num_returns: int) -> list[bytes]:
    """The ids of all of a task's returns."""
    return [return_object_id(task_id, i) for i in range(num_returns)]


def put_object_id() -> bytes:
    """A fresh id for an object made by ``put`` (random task part, index 0)."""
    return os.urandom(16) + _PUT_INDEX


def task_id_of(object_id: bytes) -> bytes:
    """The task part of an object id."""
    return object_id[:TASK_ID_LEN]


def object_index(object_id: bytes) -> int:
    """The index part of an object id (0 for a put)."""
    return int.from_bytes(object_id[TASK_ID_LEN:], "little")


