"""``ObjectRef``: a reference to an object in the cluster.

Creating one counts a local reference in the runtime; ``__del__`` only appends
the id to the runtime's release queue (it may run in any thread, or inside the
garbage collector), which is processed with the next message sent to the node.
A pickled ObjectRef travels as its id; unpickled in another process it is a
borrowed reference, counted there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from ember._private import state
from ember._private.ids import OBJECT_ID_LEN, TASK_ID_LEN


class ObjectRef:
    """A reference to an object (a task's return or a ``put`` value)."""

    __slots__ = ("__weakref__", "_id", "_rt")

    def __init__(self, object_id: bytes):
        if type(object_id) is not bytes or len(object_id) != OBJECT_ID_LEN:
            raise ValueError(f"an ObjectRef id is {OBJECT_ID_LEN} bytes, got {object_id!r}")
        self._id = object_id
        rt = state.runtime
        self._rt = rt
        if rt is not None:
            rt.add_borrowed_ref(object_id)

    def __del__(self):
        rt = self._rt
        if rt is not None:
            try:
                rt._released.append(self._id)
            except AttributeError:
                pass  # interpreter teardown: the runtime is already gone

    def binary(self) -> bytes:
        """The 20-byte id."""
        return self._id

    def hex(self) -> str:
        """The id as hex."""
        return self._id.hex()

    def task_id(self) -> bytes:
        """The id of the task that makes this object (random for a ``put``)."""
        return self._id[:TASK_ID_LEN]

    def is_nil(self) -> bool:
        return self._id == bytes(OBJECT_ID_LEN)

    def __hash__(self):
        return hash(self._id)

    def __eq__(self, other):
        return type(other) is ObjectRef and other._id == self._id

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def __reduce__(self):
        from ember._private.serialization import record_contained_ref

        record_contained_ref(self._id)
        return (_rebuild_object_ref, (self._id,))

    def __copy__(self):
        return _rebuild_object_ref(self._id)

    def __deepcopy__(self, memo):
        return _rebuild_object_ref(self._id)

    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` completed with the object's value (or exception)."""
        rt = self._rt or state.runtime
        if rt is None:
            raise RuntimeError("ember.init() must be called before ObjectRef.future()")
        return rt.future_for(self)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_object_ref(object_id: bytes) -> ObjectRef:
    """Unpickle an ObjectRef: a borrowed reference in this process."""
    return ObjectRef(object_id)


_new = object.__new__


def new_owned_ref(rt, object_id: bytes) -> ObjectRef:
    """An ObjectRef whose count the caller has already taken (submit returns, puts)."""
    ref = _new(ObjectRef)
    ref._id = object_id
    ref._rt = rt
    return ref
