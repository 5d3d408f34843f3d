import pickle
import struct

import numpy as np
import pytest

from ember import exceptions
from ember._private import serialization
from ember._private.object_ref import new_owned_ref
from ember.v1 import common_pb2


def roundtrip(value, readonly=True):
    ser = serialization.serialize(value)
    data = ser.to_bytes()
    assert len(data) == ser.size
    view = memoryview(data) if readonly else memoryview(bytearray(data))
    return ser, serialization.deserialize(ser.format, ser.metadata, view)


@pytest.mark.parametrize("value", [0, 1.5, "héllo", None, True, [1, {"a": (2, 3)}], {1, 2}, complex(1, 2)])
def test_plain_values_round_trip(value):
    ser, out = roundtrip(value)
    assert ser.format == common_pb2.PICKLE
    assert out == value


@pytest.mark.parametrize("value", [None, True, 7, -(2**70), 1.5, "héllo", 2j])
def test_pickle_plain_is_what_serialize_makes(value):
    ser = serialization.serialize(value)
    assert serialization.pickle_plain(value) == ser.to_bytes() and ser.format == common_pb2.PICKLE
    assert not ser.metadata and not ser.contained_refs


@pytest.mark.parametrize("value", [b"raw", [1], {"a": 1}, (1,), object()])
def test_pickle_plain_declines_other_values(value):
    assert serialization.pickle_plain(value) is None


def test_bytes_are_raw():
    ser, out = roundtrip(b"abc")
    assert ser.format == common_pb2.RAW and out == b"abc" and type(out) is bytes
    ser, out = roundtrip(bytearray(b"xyz"))
    assert ser.format == common_pb2.RAW and out == b"xyz" and type(out) is bytes


def test_numpy_out_of_band_layout_and_zero_copy():
    a = np.arange(1000, dtype=np.float64)
    b = np.ones((3, 5), dtype=np.int32)
    ser = serialization.serialize({"a": a, "b": b})
    version, nbuf, plen = struct.unpack_from("<IIQ", ser.metadata)
    assert (version, nbuf) == (1, 2)
    entries = [struct.unpack_from("<QQ", ser.metadata, 16 + 16 * i) for i in range(nbuf)]
    assert all(off % 64 == 0 for off, _ in entries)
    assert entries[0][0] >= plen and entries[0][1] == a.nbytes
    assert entries[1][0] >= entries[0][0] + a.nbytes and entries[1][1] == b.nbytes
    data = ser.to_bytes()
    assert ser.size == entries[1][0] + entries[1][1] == len(data)
    view = memoryview(data)
    out = serialization.deserialize(ser.format, ser.metadata, view)
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    assert not out["a"].flags.writeable
    # Zero copy: the array's memory lies inside the data buffer.
    base = np.frombuffer(data, dtype=np.uint8).__array_interface__["data"][0]
    addr = out["a"].__array_interface__["data"][0]
    assert base <= addr < base + len(data)


def test_write_into_matches_to_bytes():
    value = [np.arange(100, dtype=np.uint8), "x" * 10, np.zeros(7)]
    ser = serialization.serialize(value)
    target = bytearray(ser.size)
    ser.write_into(memoryview(target))
    assert bytes(target) == ser.to_bytes()


def test_contained_refs_are_recorded():
    a = new_owned_ref(None, b"a" * 20)
    b = new_owned_ref(None, b"b" * 20)
    ser = serialization.serialize({"x": [a, b, a]})
    assert ser.contained_refs == (b"a" * 20, b"b" * 20)
    assert serialization.serialize([1, 2]).contained_refs == ()


def test_closures_pickle_by_value():
    k = 3
    ser, out = roundtrip(lambda x: x + k)
    assert out(1) == 4


def _error_value(exc, traceback_text="Traceback...\n  File x\nValueError: bad"):
    err = common_pb2.TaskError(kind=common_pb2.TASK_FAILED, type_name=type(exc).__name__, message=str(exc),
                               traceback=traceback_text, language=common_pb2.PYTHON,
                               payload=pickle.dumps(exc), function_name="mod.f")
    return serialization.serialize_error(err)


def test_task_error_becomes_instance_of_cause():
    ser = _error_value(ValueError("bad"))
    with pytest.raises(ValueError) as info:
        serialization.deserialize(ser.format, ser.metadata, ser.to_bytes())
    e = info.value
    assert isinstance(e, exceptions.RayTaskError)
    assert isinstance(e.cause, ValueError)
    assert "Traceback" in str(e) and "ValueError: bad" in str(e)
    assert e.function_name == "mod.f"
    assert e.args == ("bad",)


def test_nested_task_error_keeps_innermost_type():
    inner = exceptions.RayTaskError("g", "tb", KeyError("k")).as_instanceof_cause()
    assert isinstance(inner, KeyError)
    ser = _error_value(inner)
    with pytest.raises(KeyError):
        serialization.deserialize(ser.format, ser.metadata, ser.to_bytes())


def test_unpicklable_cause_still_raises_ray_task_error():
    err = common_pb2.TaskError(kind=common_pb2.TASK_FAILED, type_name="Weird", message="m",
                               traceback="tb", language=common_pb2.PYTHON, payload=b"not a pickle")
    with pytest.raises(exceptions.RayTaskError) as info:
        serialization.deserialize(common_pb2.ERROR, b"", err.SerializeToString())
    assert "tb" in str(info.value)


@pytest.mark.parametrize("kind,cls", [
    (common_pb2.WORKER_CRASHED, exceptions.WorkerCrashedError),
    (common_pb2.TASK_CANCELLED, exceptions.TaskCancelledError),
    (common_pb2.OBJECT_LOST, exceptions.ObjectLostError),
    (common_pb2.UNKNOWN_FUNCTION, exceptions.UnknownFunctionError),
    (common_pb2.OBJECT_STORE_FULL, exceptions.ObjectStoreFullError),
    (common_pb2.UNAUTHENTICATED, exceptions.AuthenticationError),
    (common_pb2.GET_TIMEOUT, exceptions.GetTimeoutError),
    (common_pb2.INTERNAL, exceptions.RaySystemError),
])
def test_error_kind_table(kind, cls):
    err = common_pb2.TaskError(kind=kind, message="why")
    with pytest.raises(cls, match="why"):
        serialization.deserialize(common_pb2.ERROR, b"", err.SerializeToString())


def test_every_error_kind_is_mapped():
    for kind in common_pb2.ErrorKind.values():
        assert kind in exceptions.ERROR_KIND_TO_EXCEPTION


def test_get_timeout_error_is_timeout_error():
    assert issubclass(exceptions.GetTimeoutError, TimeoutError)
    assert issubclass(exceptions.GetTimeoutError, exceptions.RayError)


def test_ray_task_error_pickles():
    e = exceptions.RayTaskError("f", "tb", ValueError("x")).as_instanceof_cause()
    e2 = pickle.loads(pickle.dumps(e))
    assert isinstance(e2, exceptions.RayTaskError) and isinstance(e2.cause, ValueError)
