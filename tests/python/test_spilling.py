"""Object spilling against real nodes: more live objects than the store holds
spill to disk and read back equal (in the driver, in tasks, in actors and
over Arrow Flight); objects in use are never spilled; a store that cannot
make room fails with ObjectStoreFullError instead of crashing; a full spill
disk is a clear error. Each test runs its own driver and cluster."""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap

import pytest
from ember_test_support import run_driver

_SESSION_HELPERS = """
import glob, json, os
def session():
    import ember
    node_id = ember.get_runtime_context().get_node_id()
    for path in glob.glob(os.path.join(os.environ["EMBER_TMPDIR"], "session_*", "session.json")):
        info = json.load(open(path))
        if info["node_id"] == node_id:
            return info
    raise AssertionError("no session file")
"""


def _driver(body: str) -> str:
    return _SESSION_HELPERS + textwrap.dedent(body)


def _check(out, *markers):
    for marker in markers:
        assert marker in out.stdout, f"missing {marker!r}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr[-4000:]}"


def test_3gb_of_live_objects_in_a_1gb_store_spill_and_read_back_equal():
    out = run_driver(
        _driver("""
        import subprocess, sys
        import numpy as np, ember
        ember.init(num_cpus=2, object_store_memory=1 << 30)
        n = 12_500_000  # 100 MB of float64
        refs = [ember.put(np.full(n, i, dtype=np.float64)) for i in range(30)]
        stats = ember.object_store_stats()
        assert stats["used"] <= stats["capacity"], stats
        assert stats["spilled"] >= 20 * 100_000_000 and stats["num_spilled"] >= 20, stats
        assert stats["num_objects"] >= 30, stats
        spill_dir = os.path.join(session()["session_dir"], "spill")
        assert len(os.listdir(spill_dir)) >= 20, os.listdir(spill_dir)
        status = subprocess.run([os.environ["EMBER_BIN"], "status", "--address", session()["address"]],
                                capture_output=True, text=True).stdout
        assert "spilled to disk" in status, status
        print("SPILLED", stats["spilled"], stats["num_spilled"])

        # Every object reads back equal in the driver (restored on access).
        for i, ref in enumerate(refs):
            value = ember.get(ref)
            assert value.shape == (n,) and value[0] == i and value[-1] == i and (value == i).all(), i
            del value
        del ref
        print("DRIVER_OK")

        # ... and as task arguments, two at a time.
        @ember.remote
        def total(a, b):
            return float(a.sum() + b.sum())

        sums = ember.get([total.remote(refs[i], refs[29 - i]) for i in range(15)], timeout=300)
        assert sums == [float(n * 29)] * 15, sums
        print("TASKS_OK")

        # ... and as an actor call's argument.
        @ember.remote
        class Keeper:
            def first(self, a):
                return float(a[0])

        keeper = Keeper.remote()
        assert ember.get([keeper.first.remote(r) for r in refs[:5]], timeout=300) == [0.0, 1.0, 2.0, 3.0, 4.0]
        print("ACTOR_OK")
        restored = ember.object_store_stats()
        assert restored["used"] <= restored["capacity"], restored
        del refs
        ember.get(ember.put(0))
        import time
        deadline = time.time() + 30
        while ember.object_store_stats()["num_spilled"] > 0 or os.listdir(spill_dir):
            assert time.time() < deadline, (ember.object_store_stats(), os.listdir(spill_dir))
            time.sleep(0.1)
            ember.get(ember.put(0))
        print("FREED")
        ember.shutdown()
        """),
        timeout=600,
    )
    _check(out, "SPILLED", "DRIVER_OK", "TASKS_OK", "ACTOR_OK", "FREED")


def test_a_spilled_arrow_table_is_pulled_with_plain_pyarrow_flight():
    out = run_driver(
        _driver("""
        import numpy as np, pyarrow as pa, pyarrow.flight as flight, ember
        ember.init(num_cpus=1, object_store_memory=256 << 20)
        table = pa.table({"id": np.arange(8_000_000, dtype=np.int64), "x": np.random.default_rng(0).random(8_000_000)})
        ref = ember.put(table)  # ~128 MB
        fillers = [ember.put(np.ones(12_500_000)) for _ in range(3)]
        assert ember.object_store_stats()["num_spilled"] >= 1
        info = session()
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {info['token']}".encode())])
        client = flight.connect(f"grpc://{info['address']}")
        flight_info = client.get_flight_info(flight.FlightDescriptor.for_path(ref.hex()), options)
        assert flight_info.schema.equals(table.schema)
        pulled = client.do_get(flight.Ticket(ref.hex().encode()), options).read_all()
        assert pulled.equals(table)
        print("PULLED_OK")
        # An upload into the full store waits for room (spilling) and succeeds.
        upload = pa.table({"y": np.ones(12_500_000)})
        writer, reader = client.do_put(flight.FlightDescriptor.for_path("up"), upload.schema, options)
        writer.write_table(upload, max_chunksize=1 << 20)
        writer.done_writing()
        object_hex = reader.read().to_pybytes().decode()
        writer.close()

        @ember.remote
        def rows(t):
            return t.num_rows

        assert ember.get(rows.remote(ember.ObjectRef(bytes.fromhex(object_hex))), timeout=120) == 12_500_000
        assert ember.get(ref).equals(table)
        print("UPLOAD_OK")
        ember.shutdown()
        """),
        timeout=300,
    )
    _check(out, "PULLED_OK", "UPLOAD_OK")


def test_objects_in_use_are_never_spilled_and_a_put_that_cannot_fit_fails_cleanly():
    out = run_driver(
        """
        import time
        import numpy as np, ember
        from ember.exceptions import ObjectStoreFullError
        ember.init(num_cpus=1, object_store_memory=256 << 20)
        n = 12_500_000  # 100 MB
        # Two arrays held by the driver: their objects are mapped, so pinned.
        refs = [ember.put(np.full(n, i, dtype=np.float64)) for i in range(2)]
        held = [ember.get(r) for r in refs]
        started = time.monotonic()
        try:
            ember.put(np.ones(n))
            print("STORED")
        except ObjectStoreFullError as e:
            waited = time.monotonic() - started
            print("FULL", round(waited, 1), e)
        # The pinned objects were not touched.
        assert all((h == i).all() for i, h in enumerate(held))
        assert ember.object_store_stats()["num_spilled"] == 0
        # Once released, they can be spilled to make room.
        del held
        ref = ember.put(np.full(n, 7.0))
        assert ember.get(ref)[0] == 7.0
        print("SPILLED_AFTER_RELEASE", ember.object_store_stats()["num_spilled"])
        ember.shutdown()
        """,
        env={"EMBER_PUT_TIMEOUT_MS": "1500"},
        timeout=180,
    )
    _check(out, "FULL", "SPILLED_AFTER_RELEASE 1")
    message = out.stdout.split("FULL", 1)[1]
    waited = float(message.split()[0])
    assert waited >= 1.0, out.stdout  # it waited for room before failing
    assert "bytes" in message and "capacity" in message, out.stdout


def _full_spill_disk_driver(spill_args: str) -> str:
    return f"""
        import time
        import numpy as np, ember
        from ember.exceptions import ObjectStoreFullError
        ember.init(num_cpus=1, object_store_memory=256 << 20, {spill_args})
        n = 12_500_000  # 100 MB
        refs = [ember.put(np.full(n, i, dtype=np.float64)) for i in range(2)]
        started = time.monotonic()
        try:
            for i in range(2, 5):
                refs.append(ember.put(np.full(n, i, dtype=np.float64)))
            print("STORED_ALL")
        except ObjectStoreFullError as e:
            print("FULL", round(time.monotonic() - started, 1), e)
        # Nothing was lost: with one object let go, every other reads back
        # equal (a spilled one is restored into the room it left).
        del refs[-1]
        for i, ref in enumerate(refs):
            assert (ember.get(ref) == i).all(), i
        print("INTACT", len(refs))
        ember.shutdown()
        """


def test_a_full_spill_disk_is_a_clear_error_not_an_endless_retry():
    # The node may fill the spill disk to 0.1%: any real disk is fuller.
    out = run_driver(
        _full_spill_disk_driver('_system_config={"local_fs_capacity_threshold": 0.001}'),
        timeout=180,
    )
    _check(out, "FULL", "INTACT 1")
    message = out.stdout.split("FULL", 1)[1]
    assert float(message.split()[0]) < 20, out.stdout  # failed fast, not after the 30 s wait
    assert "spill directory" in message and "full" in message, out.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_real_full_filesystem_under_the_spill_directory():
    mount_point = tempfile.mkdtemp(prefix="ember-small-disk-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150m", "tmpfs", mount_point],
                             check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        out = run_driver(
            _full_spill_disk_driver(f'object_spilling_directory="{mount_point}"'),
            # No threshold: the write itself runs out of space (ENOSPC).
            env={"EMBER_SPILL_DISK_MAX_FRACTION": "2.0"},
            timeout=180,
        )
        _check(out, "FULL", "INTACT 2")  # one object fit on the small disk, the next did not
        message = out.stdout.split("FULL", 1)[1]
        assert float(message.split()[0]) < 20, out.stdout
        assert "spill directory" in message and "No space left on device" in message, out.stdout
        assert not os.listdir(mount_point), "the node removes its spill files when it stops"
    finally:
        subprocess.run(["umount", mount_point], check=False)
        os.rmdir(mount_point)
