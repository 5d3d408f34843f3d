import struct

from ember._private import ids, wire
from ember._private.protocol import encode_varint
from ember.v1 import common_pb2, local_pb2


def test_task_ids_are_prefix_plus_counter():
    gen = ids.TaskIdGenerator()
    a, b = gen.next(), gen.next()
    assert len(a) == 16 and a[:8] == b[:8] == gen.prefix
    assert int.from_bytes(b[8:], "little") == int.from_bytes(a[8:], "little") + 1
    assert ids.TaskIdGenerator().prefix != gen.prefix


def test_object_ids():
    t = b"t" * 16
    assert ids.return_object_id(t, 0) == t + struct.pack("<I", 1)
    assert ids.return_object_id(t, 20) == t + struct.pack("<I", 21)
    assert ids.return_object_ids(t, 3)[2] == t + struct.pack("<I", 3)
    p = ids.put_object_id()
    assert len(p) == 20 and p.endswith(b"\0\0\0\0") and ids.object_index(p) == 0
    assert ids.task_id_of(ids.return_object_id(t, 1)) == t


def test_varint():
    for n in (0, 1, 127, 128, 300, 2**32 + 5):
        msg = common_pb2.ShmLocation(offset=n).SerializeToString()
        assert msg == b"\x08" + encode_varint(n) or n == 0


def test_submit_encoding_parses():
    static = common_pb2.TaskSpec(
        function=common_pb2.FunctionDescriptor(language=common_pb2.PYTHON, function_id=b"f" * 20, name="m.f"),
        num_returns=2, resources={"CPU": 1.0, "GPU": 0.5}, max_retries=-1, retry_exceptions=True,
        name="f", retry_exception_allowlist=["ValueError"]).SerializeToString()
    value = wire.encode_value(common_pb2.PICKLE, b"meta", b"x" * 300, None, [b"r" * 20])
    parts = [static, wire.encode_job_id(b"\1\0\0\0"), wire.spec_task_fields(b"t" * 16, b"p" * 16),
             wire.encode_ref_arg(b"o" * 20), wire.encode_value_arg(value),
             wire.encode_ref_arg(b"k" * 20, "key"), wire.encode_value_arg(value, "kw")]
    op = local_pb2.ClientOp.FromString(wire.encode_submit(parts))
    spec = op.submit_task.spec
    assert spec.task_id == b"t" * 16 and spec.parent_task_id == b"p" * 16 and spec.job_id == b"\1\0\0\0"
    assert spec.max_retries == -1 and spec.num_returns == 2 and spec.resources["GPU"] == 0.5
    assert [a.object_ref for a in spec.args] == [b"o" * 20, b"", b"k" * 20, b""]
    assert [a.keyword for a in spec.args] == ["", "", "key", "kw"]
    v = spec.args[1].value
    assert v.format == common_pb2.PICKLE and v.metadata == b"meta" and v.inline_data == b"x" * 300
    assert list(v.contained_refs) == [b"r" * 20]


def test_submit_head_plus_task_id_is_the_general_encoding():
    job = wire.encode_job_id(b"\1\0\0\0")
    for name_len in (1, 60, 200):  # spec lengths on either side of a varint's one-byte limit
        static = common_pb2.TaskSpec(
            function=common_pb2.FunctionDescriptor(language=common_pb2.PYTHON, function_id=b"f" * 20,
                                                   name="m." + "f" * name_len),
            num_returns=1, resources={"CPU": 1.0}, max_retries=3).SerializeToString()
        task_id = b"t" * 16
        for parent in (None, b"p" * 16):
            fields = wire.spec_task_fields(task_id, parent)
            op = wire.submit_head(static, job, parent is not None) + fields
            assert op == wire.encode_submit([static, job, fields])
            spec = local_pb2.ClientOp.FromString(op).submit_task.spec
            assert spec.task_id == task_id and spec.job_id == b"\1\0\0\0" and not spec.args
            assert spec.parent_task_id == (parent or b"")


def test_value_encoding_shm_and_empty_inline():
    v = common_pb2.ObjectValue.FromString(wire.encode_value(common_pb2.PICKLE, b"", None, (8192, 10**9)))
    assert v.WhichOneof("body") == "shm" and v.shm.offset == 8192 and v.shm.size == 10**9
    v = common_pb2.ObjectValue.FromString(wire.encode_value(common_pb2.RAW, b"", b""))
    assert v.WhichOneof("body") == "inline_data" and v.inline_data == b""


def test_inline_value_and_single_return_finished_match_the_general_encoders():
    for fmt, data in ((common_pb2.PICKLE, b"\x80\x05N."), (common_pb2.RAW, b"x" * 300), (common_pb2.MSGPACK, b"")):
        value = wire.encode_inline_value(fmt, data)
        assert value == wire.encode_value(fmt, b"", data)
        for task_id in (b"t" * 16, b"u" * 200):
            one = wire.encode_task_finished(task_id, [value])
            fin = local_pb2.ClientOp.FromString(one).task_finished
            assert fin.task_id == task_id and [r.inline_data for r in fin.returns] == [data]
            assert not fin.retryable_error and not fin.actor_exit
            flagged = local_pb2.ClientOp.FromString(wire.encode_task_finished(task_id, [value], False, True))
            assert flagged.task_finished.actor_exit and flagged.task_finished.returns[0].format == fmt


def test_task_finished_and_ref_update_encoding():
    vals = [wire.encode_value(common_pb2.RAW, b"", b"a"), wire.encode_value(common_pb2.RAW, b"", b"b")]
    op = local_pb2.ClientOp.FromString(wire.encode_task_finished(b"t" * 16, vals, True))
    fin = op.task_finished
    assert fin.task_id == b"t" * 16 and fin.retryable_error and [r.inline_data for r in fin.returns] == [b"a", b"b"]
    op = local_pb2.ClientOp.FromString(wire.encode_ref_update([b"a" * 20], [b"b" * 20, b"c" * 20]))
    assert list(op.ref_update.add) == [b"a" * 20] and list(op.ref_update.remove) == [b"b" * 20, b"c" * 20]
