"""Objects as Arrow data: tables put from Python come back zero-copy, any
Arrow Flight client can pull them from the node's port with the cluster
token, and tables uploaded with plain pyarrow.flight are usable in tasks."""

from __future__ import annotations

import glob
import json
import os

import ember
import numpy as np
import pyarrow as pa
import pytest
from pyarrow import flight


def _session():
    node_id = ember.get_runtime_context().get_node_id()
    for path in glob.glob(os.path.join(os.environ["EMBER_TMPDIR"], "session_*", "session.json")):
        with open(path) as f:
            info = json.load(f)
        if info["node_id"] == node_id:
            return info
    raise AssertionError("no session file for this cluster")


def _client():
    info = _session()
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {info['token']}".encode())])
    return flight.connect(f"grpc://{info['address']}"), options


def _table(rows=1_000_000):
    rng = np.random.default_rng(1)
    return pa.table({"id": np.arange(rows, dtype=np.int64), "score": rng.random(rows), "tag": ["t"] * rows})


def test_arrow_table_put_get_is_zero_copy(cluster):
    table = _table()
    got = ember.get(ember.put(table))
    assert isinstance(got, pa.Table) and got.equals(table)
    address = got.column("score").chunk(0).buffers()[1].address
    shm_path = _session()["shm_path"]
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f if shm_path in line]
    assert any(int(r[0].split("-")[0], 16) <= address < int(r[0].split("-")[1], 16) for r in regions)


def test_flight_pulls_an_object_put_from_python(cluster):
    table = _table()
    ref = ember.put(table)
    client, options = _client()
    pulled = client.do_get(flight.Ticket(ref.hex().encode()), options).read_all()
    assert pulled.equals(table)
    info = client.get_flight_info(flight.FlightDescriptor.for_path(ref.hex()), options)
    assert info.schema.equals(table.schema)
    assert info.total_bytes > 0
    listed = [f.descriptor.path[0].decode() if f.descriptor.path else "" for f in client.list_flights(options=options)]
    assert ref.hex() in " ".join(listed) or any(
        ep.ticket.ticket.decode() == ref.hex()
        for f in client.list_flights(options=options)
        for ep in f.endpoints
    )


def test_flight_pulls_one_large_batch_of_every_column_kind(cluster):
    # One record batch of ~40 MB: the node cuts it into messages a default
    # gRPC client accepts, sending the bodies out of shared memory as they
    # are. Every kind of column must arrive equal, nulls and offsets included.
    rows = 500_000
    rng = np.random.default_rng(7)
    mask = rng.random(rows) < 0.1
    table = pa.table({
        "f64": pa.array(rng.random(rows), mask=mask),
        "i8": pa.array(rng.integers(-100, 100, rows, dtype=np.int8)),
        "bool": pa.array(rng.random(rows) < 0.5, mask=mask),
        "str": pa.array([("x" * 50 if i < rows // 10 else str(i)) for i in range(rows)]),
        "large_bin": pa.array([bytes([i % 256]) * (i % 5) for i in range(rows)], type=pa.large_binary()),
        "list": pa.array([list(range(i % 4)) if i % 13 else None for i in range(rows)], type=pa.list_(pa.int32())),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(rows * 4).astype(np.float32)), 4),
        "struct": pa.StructArray.from_arrays([pa.array(np.arange(rows)), pa.array([str(i % 9) for i in range(rows)])],
                                             names=["a", "b"]),
        "dict": pa.array([("red", "green", "blue")[i % 3] for i in range(rows)]).dictionary_encode(),
        "ts": pa.array(np.arange(rows, dtype=np.int64).astype("datetime64[us]")),
        "dec": pa.array([i for i in range(rows)], type=pa.int64()).cast(pa.decimal128(24, 2)),
    }).combine_chunks()
    assert len(table.to_batches()) == 1 and table.nbytes > 30_000_000
    ref = ember.put(table)
    client, options = _client()
    reader = client.do_get(flight.Ticket(ref.hex().encode()), options)
    batches = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        batches.append(chunk.data)
    assert len(batches) > 5
    assert all(b.nbytes < 8 << 20 for b in batches)
    pulled = pa.Table.from_batches(batches)
    assert pulled.schema.equals(table.schema)
    assert pulled.equals(table)


def test_flight_pulls_empty_tables(cluster):
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    for table in (schema.empty_table(), pa.Table.from_batches([], schema=schema)):
        ref = ember.put(table)
        client, options = _client()
        pulled = client.do_get(flight.Ticket(ref.hex().encode()), options).read_all()
        assert pulled.schema.equals(schema) and pulled.num_rows == 0


def test_flight_put_then_get_in_a_task(cluster):
    table = _table(200_000)
    client, options = _client()
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("uploaded"), table.schema, options)
    writer.write_table(table)
    writer.done_writing()
    object_hex = reader.read().to_pybytes().decode()
    writer.close()

    @ember.remote
    def summarize(t):
        return t.num_rows, float(t.column("score").to_numpy().sum())

    ref = ember.ObjectRef(bytes.fromhex(object_hex))
    rows, total = ember.get(summarize.remote(ref), timeout=60)
    assert rows == table.num_rows
    assert abs(total - float(table.column("score").to_numpy().sum())) < 1e-6


def test_flight_errors_are_clear(cluster):
    client, options = _client()
    missing = "ab" * 20
    # NOT_FOUND (pyarrow raises ArrowKeyError for it), naming the id.
    with pytest.raises(pa.ArrowKeyError, match=f"object {missing} not found"):
        client.do_get(flight.Ticket(missing.encode()), options).read_all()
    # A ticket that is no object id: INVALID_ARGUMENT (ArrowInvalid).
    with pytest.raises(pa.ArrowInvalid):
        client.do_get(flight.Ticket(b"not-an-object-id"), options).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.do_get(flight.Ticket(missing.encode())).read_all()


def test_100000_small_tasks_leave_no_objects_behind(cluster):
    from ember._private import state

    @ember.remote
    def one(i):
        return i

    before = state.runtime.cluster_status().num_objects
    for _ in range(10):
        assert sum(ember.get([one.remote(i) for i in range(10_000)])) == sum(range(10_000))
    ember.get(ember.put(0))  # flush reference updates
    after = state.runtime.cluster_status().num_objects
    assert after <= before + 1, (before, after)


def test_object_store_stats(cluster):
    before = ember.object_store_stats()
    assert before["capacity"] > 0
    ref = ember.put(np.zeros(8 << 20, dtype=np.uint8))
    during = ember.object_store_stats()
    assert during["used"] >= before["used"] + (8 << 20)
    assert during["num_objects"] >= before["num_objects"] + 1
    del ref
    ember.get(ember.put(1))  # flush the release
    after = ember.object_store_stats()
    assert after["used"] < during["used"]


def test_refs_nested_in_objects_live_as_long_as_the_outer_object(cluster):
    import gc

    inner = ember.put(np.arange(1 << 20))  # 8 MB, in shared memory
    inner_id = inner.binary()
    outer = ember.put({"payload": [inner]})
    del inner
    gc.collect()
    ember.get(ember.put(0))  # flush the release of `inner`

    @ember.remote
    def read_nested(box):
        return int(ember.get(box["payload"][0]).sum())

    # The outer object keeps the inner one alive, in tasks too.
    assert ember.get(read_nested.remote(outer), timeout=60) == int(np.arange(1 << 20).sum())
    got = ember.get(outer)["payload"][0]
    assert got.binary() == inner_id
    used_with = ember.object_store_stats()["used"]
    del outer, got
    gc.collect()
    ember.get(ember.put(0))
    # Once nothing refers to either, both are freed.
    deadline = __import__("time").time() + 10
    while ember.object_store_stats()["used"] > used_with - (8 << 20):
        assert __import__("time").time() < deadline, "the nested object was not freed"
        __import__("time").sleep(0.05)
        ember.get(ember.put(0))


def test_refs_nested_in_task_arguments_stay_alive_for_the_task(cluster):
    import gc

    @ember.remote
    def later(box):
        import time

        time.sleep(0.5)
        return int(ember.get(box[0]).sum())

    inner = ember.put(np.ones(1 << 20))
    ref = later.remote([inner])
    del inner
    gc.collect()
    ember.get(ember.put(0))
    assert ember.get(ref, timeout=60) == 1 << 20


def test_put_and_drop_100mb_in_a_loop_runs_in_bounded_memory():
    from ember_test_support import run_driver

    out = run_driver(
        """
        import numpy as np, psutil, ember
        ember.init(num_cpus=1, object_store_memory=1 << 30)
        proc = psutil.Process()
        array = np.ones(100 * 1000 * 1000 // 8)
        peak_used = 0
        rss = {}
        for i in range(200):
            ref = ember.put(array)
            if i % 20 == 0:
                peak_used = max(peak_used, ember.object_store_stats()["used"])
            if i in (20, 199):
                rss[i] = proc.memory_info().rss
            del ref
        print("PEAK", peak_used, "CAP", ember.object_store_stats()["capacity"])
        print("RSS_GROWTH_MB", (rss[199] - rss[20]) // (1 << 20))
        ember.shutdown()
        """,
        timeout=240,
    )
    assert "PEAK" in out.stdout, out.stdout + out.stderr
    peak, cap = int(out.stdout.split("PEAK")[1].split()[0]), int(out.stdout.split("CAP")[1].split()[0])
    assert 0 < peak <= cap
    growth = int(out.stdout.split("RSS_GROWTH_MB")[1].split()[0])
    assert growth < 64, out.stdout


def test_flight_put_larger_than_the_store_is_resource_exhausted():
    from ember_test_support import run_driver

    out = run_driver(
        """
        import glob, json, os
        import numpy as np, pyarrow as pa, pyarrow.flight as flight, ember
        ember.init(num_cpus=1, object_store_memory=64 << 20)
        node_id = ember.get_runtime_context().get_node_id()
        for path in glob.glob(os.path.join(os.environ["EMBER_TMPDIR"], "session_*", "session.json")):
            info = json.load(open(path))
            if info["node_id"] == node_id:
                break
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {info['token']}".encode())])
        client = flight.connect(f"grpc://{info['address']}")
        table = pa.table({"x": np.ones(100 * 1000 * 1000 // 8)})
        try:
            writer, reader = client.do_put(flight.FlightDescriptor.for_path("big"), table.schema, options)
            writer.write_table(table, max_chunksize=1 << 20)
            writer.done_writing()
            reader.read()
            writer.close()
            print("STORED")
        except pa.ArrowException as e:
            print("REFUSED", type(e).__name__, e)
        print("STILL", ember.get(ember.put(np.ones(10))).sum())
        ember.shutdown()
        """,
        timeout=120,
    )
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert "resource" in out.stdout.lower() or "capacity" in out.stdout.lower(), out.stdout
    assert "STILL 10.0" in out.stdout, out.stdout + out.stderr
