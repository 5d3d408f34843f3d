"""Values ↔ ``ObjectValue`` bytes.

Formats (``common_pb2.ValueFormat``):

* ``PICKLE``: cloudpickle, protocol 5, large buffers out-of-band. The data is
  the pickle bytes followed by each out-of-band buffer at an offset aligned to
  64 bytes. ``metadata`` is the buffer table, little-endian::

      u32 version (1) | u32 nbuf | u64 pickle_len | nbuf × (u64 offset, u64 len)

  Empty ``metadata`` means the whole data is the pickle (no buffers).
  Reading slices a memoryview of the data, so numpy arrays come back without a
  copy (read-only when the data is read-only, as shared memory is mapped).
* ``RAW``: ``bytes``/``bytearray`` values as they are (``get`` returns
  ``bytes``, one copy, since a ``bytes`` object owns its memory). A
  ``memoryview`` is stored as RAW with metadata ``b"memoryview"`` and comes
  back as a read-only ``memoryview``: for large binary data that is the
  zero-copy path (the view lies in the shared mapping).
* ``MSGPACK``, ``ARROW``: cross-language values (read only here for now).
* ``ERROR``: a serialized ``TaskError``; reading it raises the mapped exception.

ObjectRefs pickled inside a value are recorded (``ObjectRef.__reduce__`` calls
``record_contained_ref``) and listed in ``ObjectValue.contained_refs``.
"""

from __future__ import annotations

import io
import pickle
import struct
import threading

import cloudpickle

from ember._private.memcopy import copy_into
from ember._private.memcopy import threads as memcopy_threads
from ember.exceptions import exception_for_error
from ember.v1 import common_pb2

PICKLE = common_pb2.PICKLE
MSGPACK = common_pb2.MSGPACK
ARROW = common_pb2.ARROW
RAW = common_pb2.RAW
#: RAW metadata of a value that was a memoryview (and comes back as one).
MEMORYVIEW = b"memoryview"
ERROR = common_pb2.ERROR

LAYOUT_VERSION = 1
ALIGN = 64
_HEADER = struct.Struct("<IIQ")
_ENTRY = struct.Struct("<QQ")
_ZEROS = bytes(ALIGN)

# Values of these types never hold code or ObjectRefs: plain pickle is enough
# (and several times faster than building a CloudPickler).
_PLAIN_TYPES = frozenset({int, float, str, bool, type(None), complex})

_tls = threading.local()


def record_contained_ref(object_id: bytes) -> None:
    """Called while pickling an ObjectRef: note its id in the value being serialized."""
    refs = getattr(_tls, "refs", None)
    if refs is not None:
        refs.append(object_id)


class SerializedValue:
    """A value ready to be stored: format, metadata and the pieces of its data.

    ``size`` is the total data length; ``to_bytes()`` joins the pieces (one
    copy) for an inline value, ``write_into(view)`` copies them straight into
    shared memory (one copy per piece, large ones on several threads).
    """

    __slots__ = ("buffers", "contained_refs", "format", "head", "metadata", "offsets", "size")

    def __init__(self, fmt, metadata, head, buffers, offsets, size, contained_refs):
        self.format = fmt
        self.metadata = metadata
        # The pickle bytes (or the whole value for RAW/ERROR).
        self.head = head
        # Out-of-band buffers (1-D unsigned-byte memoryviews) and their offsets.
        self.buffers = buffers
        self.offsets = offsets
        self.size = size
        self.contained_refs = contained_refs

    def to_bytes(self) -> bytes:
        """The data as one bytes object."""
        if not self.buffers:
            head = self.head
            return head if type(head) is bytes else bytes(head)
        parts = [self.head]
        pos = len(self.head)
        for off, buf in zip(self.offsets, self.buffers):
            if off > pos:
                parts.append(_ZEROS[: off - pos])
            parts.append(buf)
            pos = off + buf.nbytes
        return b"".join(parts)

    def write_into(self, view: memoryview) -> None:
        """Copy the data into ``view`` (at least ``size`` bytes, writable)."""
        head = self.head
        copy_into(view[: len(head)], head)
        for off, buf in zip(self.offsets, self.buffers):
            copy_into(view[off: off + buf.nbytes], buf)


class ArrowValue:
    """A pyarrow Table or RecordBatch as an ARROW value: an Arrow IPC stream.

    Written straight into its destination (``write_into``: shared memory,
    no intermediate copy) after a first pass that only measures the size;
    readers (``get``, any Arrow Flight client) get the record batches back,
    in Python with their buffers still in shared memory.
    """

    __slots__ = ("size", "table")

    format = ARROW
    metadata = b""
    contained_refs = ()

    def __init__(self, table):
        import pyarrow as pa

        self.table = table
        sink = pa.MockOutputStream()
        self._write(sink)
        self.size = sink.size()

    def _write(self, sink) -> None:
        import pyarrow as pa

        with pa.ipc.new_stream(sink, self.table.schema) as writer:
            if isinstance(self.table, pa.RecordBatch):
                writer.write_batch(self.table)
            else:
                writer.write_table(self.table)

    def to_bytes(self) -> bytes:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        self._write(sink)
        return sink.getvalue().to_pybytes()

    def write_into(self, view: memoryview) -> None:
        import pyarrow as pa

        writer = pa.FixedSizeBufferWriter(pa.py_buffer(view))
        if memcopy_threads() > 1:
            writer.set_memcopy_threads(memcopy_threads())
        self._write(writer)


def _is_arrow(vtype) -> bool:
    module = vtype.__module__
    return module.startswith("pyarrow") and vtype.__name__ in ("Table", "RecordBatch")


def serialize(value) -> SerializedValue:
    """Serialize a Python value (RAW for bytes, ARROW for pyarrow tables and
    record batches, else PICKLE with out-of-band buffers)."""
    vtype = type(value)
    if _is_arrow(vtype):
        return ArrowValue(value)
    if vtype is bytes or vtype is bytearray:
        return SerializedValue(RAW, b"", value, (), (), len(value), ())
    if vtype is memoryview:
        view = value.cast("B") if value.c_contiguous else memoryview(value.tobytes())
        return SerializedValue(RAW, MEMORYVIEW, view, (), (), view.nbytes, ())
    if vtype in _PLAIN_TYPES:
        data = pickle.dumps(value, 5)
        return SerializedValue(PICKLE, b"", data, (), (), len(data), ())
    return _serialize_pickle(value)


def pickle_plain(value) -> bytes | None:
    """The PICKLE data of a plain value (None, bool, int, float, str, complex: no
    buffers, no refs, as ``serialize`` makes it), or None for any other value."""
    if value is None:
        return _NONE_PICKLE
    if type(value) in _PLAIN_TYPES:
        return pickle.dumps(value, 5)
    return None


_NONE_PICKLE = pickle.dumps(None, 5)


def serialize_msgpack(value) -> SerializedValue:
    """Serialize a value for another language: ARROW for pyarrow tables and
    record batches, else MSGPACK (None, bool, int, float, str, bytes, lists,
    tuples as lists, dicts). A Python-only value is a TypeError naming its
    type."""
    if _is_arrow(type(value)):
        return ArrowValue(value)
    import msgpack

    try:
        data = msgpack.packb(value, use_bin_type=True, use_single_float=False)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError(
            f"a value of type {type(value).__module__}.{type(value).__qualname__} cannot be sent "
            f"to another language ({e}): values across languages are msgpack (None, bool, int, "
            "float, str, bytes, lists, dicts) or Arrow tables"
        ) from None
    return SerializedValue(MSGPACK, b"", data, (), (), len(data), ())


def _serialize_pickle(value) -> SerializedValue:
    pickle_buffers: list[pickle.PickleBuffer] = []
    outer = getattr(_tls, "refs", None)
    refs: list[bytes] = []
    _tls.refs = refs
    try:
        stream = io.BytesIO()
        cloudpickle.CloudPickler(stream, protocol=5, buffer_callback=pickle_buffers.append).dump(value)
        data = stream.getvalue()
    finally:
        _tls.refs = outer
    if outer is not None:
        outer.extend(refs)
    contained = tuple(dict.fromkeys(refs)) if refs else ()
    if not pickle_buffers:
        return SerializedValue(PICKLE, b"", data, (), (), len(data), contained)
    buffers = []
    offsets = []
    entries = []
    pos = len(data)
    for pb in pickle_buffers:
        raw = pb.raw()
        pos = (pos + ALIGN - 1) & ~(ALIGN - 1)
        offsets.append(pos)
        buffers.append(raw)
        entries.append(_ENTRY.pack(pos, raw.nbytes))
        pos += raw.nbytes
    metadata = _HEADER.pack(LAYOUT_VERSION, len(buffers), len(data)) + b"".join(entries)
    return SerializedValue(PICKLE, metadata, data, buffers, offsets, pos, contained)


def serialize_error(error: common_pb2.TaskError) -> SerializedValue:
    """An ERROR value holding ``error``."""
    data = error.SerializeToString()
    return SerializedValue(ERROR, b"", data, (), (), len(data), ())


def parse_layout(metadata: bytes) -> tuple[int, list[tuple[int, int]]]:
    """Decode a PICKLE buffer table: (pickle_len, [(offset, len), ...])."""
    version, nbuf, pickle_len = _HEADER.unpack_from(metadata, 0)
    if version != LAYOUT_VERSION:
        raise ValueError(f"unknown pickle layout version {version}")
    entries = [_ENTRY.unpack_from(metadata, _HEADER.size + i * _ENTRY.size) for i in range(nbuf)]
    return pickle_len, entries


def deserialize(fmt: int, metadata: bytes, data):
    """Rebuild a value from its format, metadata and data (bytes or memoryview).

    An ERROR value raises its exception.
    """
    if fmt == PICKLE:
        if not metadata:
            return pickle.loads(data)
        pickle_len, entries = parse_layout(metadata)
        view = data if type(data) is memoryview else memoryview(data)
        return pickle.loads(view[:pickle_len], buffers=[view[o: o + n] for o, n in entries])
    if fmt == RAW:
        if metadata == MEMORYVIEW:
            return (data if type(data) is memoryview else memoryview(data)).toreadonly()
        return data if type(data) is bytes else bytes(data)
    if fmt == ERROR:
        raise error_from_data(data)
    if fmt == MSGPACK:
        import msgpack

        # Maps from other languages may have keys of any type.
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    if fmt == ARROW:
        import pyarrow as pa

        reader = pa.ipc.open_stream(pa.py_buffer(data))
        # The table's buffers are slices of `data`: shared memory, no copy.
        return reader.read_all()
    raise ValueError(f"unknown value format {fmt}")


def error_from_data(data) -> BaseException:
    """The exception an ERROR value's data stands for."""
    err = common_pb2.TaskError.FromString(bytes(data) if type(data) is memoryview else data)
    return exception_for_error(err)
