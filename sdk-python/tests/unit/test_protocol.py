import os
import socket
import struct
import threading

import pytest

from ember import exceptions
from ember._private.protocol import Connection, encode_frame, split_frames
from ember.v1 import local_pb2


def node_frame(*ops):
    body = local_pb2.NodeMessage(ops=list(ops)).SerializeToString()
    return struct.pack("<I", len(body)) + body


def warning(text):
    return local_pb2.NodeOp(warning=local_pb2.Warning(message=text))


def test_encode_frame_is_a_client_message():
    ops = [local_pb2.ClientOp(worker_unblocked=local_pb2.WorkerUnblocked()).SerializeToString(),
           local_pb2.ClientOp(get_objects=local_pb2.GetObjects(object_ids=[b"x" * 20])).SerializeToString()]
    frame = encode_frame(ops)
    (n,) = struct.unpack_from("<I", frame)
    assert n == len(frame) - 4
    msg = local_pb2.ClientMessage.FromString(frame[4:])
    assert [op.WhichOneof("op") for op in msg.ops] == ["worker_unblocked", "get_objects"]


def test_split_frames_partial():
    data = node_frame(warning("a")) + node_frame(warning("b" * 300))
    for cut in range(len(data) + 1):
        frames, rest = split_frames(data[:cut], 0, cut)
        assert all(b <= cut for _, b in frames)
        assert rest == (frames[-1][1] if frames else 0)
    frames, rest = split_frames(data, 0, len(data))
    assert len(frames) == 2 and rest == len(data)


def test_split_frames_over_socketpair_byte_by_byte():
    a, b = socket.socketpair()
    data = node_frame(warning("hello")) * 3
    for i in range(len(data)):
        a.send(data[i:i + 1])
    buf = bytearray()
    while len(buf) < len(data):
        buf += b.recv(7)
    frames, rest = split_frames(buf, 0, len(buf))
    assert len(frames) == 3 and rest == len(data)
    a.close()
    b.close()


@pytest.fixture
def server(tmp_path):
    path = os.path.join(tmp_path, "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    yield path, listener
    listener.close()


def test_connection_partial_and_large_frames(server):
    path, listener = server
    got = []
    conn = Connection(path, lambda msg: got.extend(op.warning.message for op in msg.ops))
    peer, _ = listener.accept()
    big = "x" * (3 << 20)  # larger than the initial 1 MiB buffer
    data = node_frame(warning("one")) + node_frame(warning(big)) + node_frame(warning("three"))

    def dribble():
        for i in range(0, len(data), 65521):
            peer.sendall(data[i:i + 65521])

    t = threading.Thread(target=dribble)
    t.start()
    assert conn.wait_until(lambda: len(got) == 3, timeout=10)
    t.join()
    assert got[0] == "one" and got[1] == big and got[2] == "three"
    # A timeout with nothing to read returns False.
    assert conn.wait_until(lambda: False, timeout=0.05) is False
    # EOF: waits raise LocalRayletDiedError naming the socket.
    peer.close()
    with pytest.raises(exceptions.LocalRayletDiedError, match="closed the connection"):
        conn.wait_until(lambda: False, timeout=5)
    conn.close()


def test_connection_followers_are_woken(server):
    path, listener = server
    got = []
    conn = Connection(path, lambda msg: got.extend(op.warning.message for op in msg.ops))
    peer, _ = listener.accept()
    results = {}

    def waiter(name):
        results[name] = conn.wait_until(lambda: name in got, timeout=10)

    threads = [threading.Thread(target=waiter, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for i in range(8):
        peer.sendall(node_frame(warning(f"w{i}")))
    for t in threads:
        t.join(10)
    assert results == {f"w{i}": True for i in range(8)}
    # Sends arrive as frames.
    conn.send([local_pb2.ClientOp(worker_unblocked=local_pb2.WorkerUnblocked()).SerializeToString()])
    (n,) = struct.unpack("<I", peer.recv(4))
    msg = local_pb2.ClientMessage.FromString(peer.recv(n))
    assert msg.ops[0].WhichOneof("op") == "worker_unblocked"
    peer.close()
    conn.close()


def _read_client_frames(sock, n_ops, timeout=5.0):
    """Read ClientMessage frames until ``n_ops`` ops arrived; return the op counts per frame."""
    sock.settimeout(timeout)
    data = b""
    counts, seen = [], 0
    while seen < n_ops:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
        while len(data) >= 4:
            (n,) = struct.unpack_from("<I", data)
            if len(data) < 4 + n:
                break
            msg = local_pb2.ClientMessage.FromString(data[4:4 + n])
            data = data[4 + n:]
            counts.append(len(msg.ops))
            seen += len(msg.ops)
    return counts


def test_bursts_of_submissions_are_coalesced(tmp_path):
    path = str(tmp_path / "node.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    conn = Connection(path, lambda msg: None)
    server, _ = listener.accept()
    op = local_pb2.ClientOp(worker_unblocked=local_pb2.WorkerUnblocked()).SerializeToString()
    # A lone call goes out at once, in a frame of its own.
    conn.send_coalesced([op])
    assert _read_client_frames(server, 1) == [1]
    # A burst goes out in fewer frames, every op in order, without any other call.
    import time

    time.sleep(0.01)
    for _ in range(200):
        conn.send_coalesced([op])
    counts = _read_client_frames(server, 200)
    assert sum(counts) == 200
    assert len(counts) < 50, counts
    # Held ops go out before anything sent after them.
    time.sleep(0.01)
    conn.send_coalesced([op])
    conn.send_coalesced([op])
    marker = local_pb2.ClientOp(worker_blocked=local_pb2.WorkerBlocked()).SerializeToString()
    conn.send([marker])
    server.settimeout(5)
    received = b""
    ops = []
    while len(ops) < 3:
        received += server.recv(65536)
        while len(received) >= 4:
            (n,) = struct.unpack_from("<I", received)
            if len(received) < 4 + n:
                break
            ops += [o.WhichOneof("op") for o in local_pb2.ClientMessage.FromString(received[4:4 + n]).ops]
            received = received[4 + n:]
    assert ops == ["worker_unblocked", "worker_unblocked", "worker_blocked"]
    conn.close()
    server.close()
    listener.close()
